/* A stand-in for NVIDIA's libnvidia-ml.so.1 on machines without a GPU: it answers the NVML
 * calls the mesh makes with FAKE_NVML_GPUS devices (default 2) of FAKE_NVML_MIB MiB each
 * (default 2048), so `mesh-llm serve` can be run as on a multi-GPU box. llama-server built
 * for the CPU ignores the CUDA_VISIBLE_DEVICES a worker gives it and runs on the CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

enum { OK = 0, INVALID_ARGUMENT = 2, INSUFFICIENT_SIZE = 7 };

static unsigned count(void) {
    const char *n = getenv("FAKE_NVML_GPUS");
    return n ? (unsigned)atoi(n) : 2;
}

static unsigned long long memory(void) {
    const char *mib = getenv("FAKE_NVML_MIB");
    return (mib ? strtoull(mib, NULL, 10) : 2048ULL) << 20;
}

/* a handle is the device index plus one (never NULL) */
static long index_of(void *handle) { return (long)handle - 1; }

static int put(char *out, unsigned size, const char *text) {
    if (strlen(text) + 1 > size) return INSUFFICIENT_SIZE;
    strcpy(out, text);
    return OK;
}

int nvmlInitWithFlags(unsigned flags) { (void)flags; return OK; }
int nvmlInit_v2(void) { return OK; }
int nvmlShutdown(void) { return OK; }
const char *nvmlErrorString(int result) { return result == OK ? "Success" : "Fake NVML error"; }

int nvmlSystemGetDriverVersion(char *version, unsigned size) {
    return put(version, size, "999.0.fake");
}

int nvmlDeviceGetCount_v2(unsigned *n) { *n = count(); return OK; }

int nvmlDeviceGetHandleByIndex_v2(unsigned index, void **handle) {
    if (index >= count()) return INVALID_ARGUMENT;
    *handle = (void *)(long)(index + 1);
    return OK;
}

int nvmlDeviceGetName(void *handle, char *name, unsigned size) {
    (void)handle;
    return put(name, size, "Fake GPU");
}

int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned size) {
    char text[64];
    snprintf(text, sizeof text, "GPU-fa4e0000-0000-4000-8000-%012ld", index_of(handle));
    return put(uuid, size, text);
}

int nvmlDeviceGetMemoryInfo(void *handle, nvmlMemory_t *m) {
    (void)handle;
    m->total = m->free = memory();
    m->used = 0;
    return OK;
}

int nvmlDeviceGetPciInfo_v3(void *handle, nvmlPciInfo_t *pci) {
    memset(pci, 0, sizeof *pci);
    pci->bus = (unsigned)index_of(handle) + 1;
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
    return OK;
}
