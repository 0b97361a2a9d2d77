/*
 * Fill llama.cpp's rpc-server tensor cache from a local GGUF file, so that a host loading a
 * split sends a 64-bit hash instead of the bytes of each large tensor.
 *
 *   mesh-rpc-cache-fill MODEL.gguf CACHE_DIR < ranges
 *
 * `ranges` holds one "OFFSET SIZE" pair (bytes, decimal) per line: a tensor's data as stored
 * in the file. For each, the FNV-1a 64-bit hash of those bytes names the cache file
 * CACHE_DIR/<16 lowercase hex digits>; an existing file is kept, a new one is written to a
 * temporary name and renamed (the server never re-checks a hash). One line goes to stdout per
 * tensor: "<hash> <size> <cached|written>". Exit status 0, or 1 with a message on stderr.
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t fnv1a64(const unsigned char *data, size_t size) {
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++) {
        hash ^= data[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

static int write_all(int fd, const unsigned char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size > (1 << 26) ? (1 << 26) : size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf CACHE_DIR < \"OFFSET SIZE\" lines\n", argv[0]);
        return 1;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "cannot open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    const unsigned char *map = st.st_size > 0
        ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    if (map == MAP_FAILED) {
        fprintf(stderr, "cannot map %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    unsigned long long offset, size;
    char path[4096], tmp[4200];
    while (scanf("%llu %llu", &offset, &size) == 2) {
        if (offset > (unsigned long long)st.st_size || size > (unsigned long long)st.st_size - offset) {
            fprintf(stderr, "range %llu+%llu is outside %s\n", offset, size, argv[1]);
            return 1;
        }
        const unsigned char *data = map + offset;
        madvise((void *)((uintptr_t)data & ~(uintptr_t)4095), size + 4096, MADV_SEQUENTIAL);
        uint64_t hash = fnv1a64(data, size);
        snprintf(path, sizeof path, "%s/%016" PRIx64, argv[2], hash);
        struct stat existing;
        if (stat(path, &existing) == 0 && (unsigned long long)existing.st_size == size) {
            printf("%016" PRIx64 " %llu cached\n", hash, size);
            fflush(stdout);
            continue;
        }
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
        int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || write_all(out, data, size) != 0 || fsync(out) != 0 || close(out) != 0 ||
            rename(tmp, path) != 0) {
            fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
            unlink(tmp);
            return 1;
        }
        printf("%016" PRIx64 " %llu written\n", hash, size);
        fflush(stdout);
    }
    return 0;
}
