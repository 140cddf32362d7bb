/* A disk that fills up (or turns read-only) after a byte budget, for files under one folder.
 *
 * Loaded with LD_PRELOAD into a process; settings from the environment:
 *   DISKFAULT_PREFIX  absolute folder whose files are affected (others are untouched)
 *   DISKFAULT_BYTES   bytes that may still be written under it; the write that would pass the
 *                     budget fails, and so does every later one (the disk is full from there on)
 *   DISKFAULT_CALLS   or: write calls that may still succeed under it (the next one fails); steadier
 *                     than bytes when a run's log lines differ in length from one run to the next
 *   DISKFAULT_ERRNO   28 (ENOSPC, the default: creating directories fails too once full) or 30
 *                     (EROFS: once the budget is spent, creating, renaming, removing and opening
 *                     for writing fail as well, as on a file system remounted read-only)
 *   DISKFAULT_TRACE   optional file outside the folder: one line per write ("total bytes path")
 * Written for the fault-injection tests; it wraps the libc calls Python, orbax and tensorstore
 * write through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *prefix;
static size_t prefix_length;
static long long budget = -1, used, allowed_calls = -1, calls;
static int fault_errno = ENOSPC, ready, full;
static FILE *trace;

static void init(void) {
    if (ready) return;
    ready = 1;
    prefix = getenv("DISKFAULT_PREFIX");
    prefix_length = prefix ? strlen(prefix) : 0;
    const char *bytes = getenv("DISKFAULT_BYTES"), *code = getenv("DISKFAULT_ERRNO");
    const char *trace_path = getenv("DISKFAULT_TRACE"), *call_count = getenv("DISKFAULT_CALLS");
    if (bytes) budget = atoll(bytes);
    if (call_count) allowed_calls = atoll(call_count);
    if (call_count && !bytes) budget = 1LL << 62;
    if (code) fault_errno = atoi(code);
    if (trace_path) trace = fopen(trace_path, "a");
}

static int under(const char *path) {
    return prefix && strncmp(path, prefix, prefix_length) == 0 &&
           (path[prefix_length] == '/' || path[prefix_length] == '\0');
}

static int fd_path(int fd, char *out) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n < 0) return 0;
    out[n] = '\0';
    return 1;
}

static int path_under(int dirfd, const char *path) {
    char full_path[2 * PATH_MAX], base[PATH_MAX];
    init();
    if (!prefix || !path) return 0;
    if (path[0] == '/') return under(path);
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) return 0;
    } else if (!fd_path(dirfd, base)) {
        return 0;
    }
    snprintf(full_path, sizeof full_path, "%s/%s", base, path);
    return under(full_path);
}

/* 1 when a write of n bytes to fd must fail */
static int refuse_write(int fd, size_t n) {
    char path[PATH_MAX];
    init();
    if (budget < 0 || !prefix || !fd_path(fd, path) || !under(path)) return 0;
    if (full || used + (long long)n > budget || (allowed_calls >= 0 && calls >= allowed_calls)) {
        full = 1;
        errno = fault_errno;
        return 1;
    }
    used += (long long)n;
    calls++;
    if (trace) { fprintf(trace, "%lld %s\n", used, path); fflush(trace); }
    return 0;
}

/* 1 when a change to a path (create, rename, remove) must fail */
static int refuse_change(int dirfd, const char *path, int is_mkdir) {
    init();
    if (budget < 0 || !path_under(dirfd, path)) return 0;
    int spent = budget == 0 || allowed_calls == 0;
    int blocked = fault_errno == EROFS ? (full || spent) : (is_mkdir && full);
    if (blocked) { full = 1; errno = fault_errno; }
    return blocked;
}

#define REAL(name) static __typeof__(name) *real_##name; if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n) { REAL(write); return refuse_write(fd, n) ? -1 : real_write(fd, buf, n); }
ssize_t pwrite(int fd, const void *buf, size_t n, off_t at) { REAL(pwrite); return refuse_write(fd, n) ? -1 : real_pwrite(fd, buf, n, at); }
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t at) { REAL(pwrite64); return refuse_write(fd, n) ? -1 : real_pwrite64(fd, buf, n, at); }

static size_t iov_bytes(const struct iovec *iov, int count) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += iov[i].iov_len;
    return total;
}
ssize_t writev(int fd, const struct iovec *iov, int count) { REAL(writev); return refuse_write(fd, iov_bytes(iov, count)) ? -1 : real_writev(fd, iov, count); }
ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t at) { REAL(pwritev); return refuse_write(fd, iov_bytes(iov, count)) ? -1 : real_pwritev(fd, iov, count, at); }
int fallocate(int fd, int mode, off_t at, off_t n) { REAL(fallocate); return refuse_write(fd, (size_t)n) ? -1 : real_fallocate(fd, mode, at, n); }
int posix_fallocate(int fd, off_t at, off_t n) { REAL(posix_fallocate); return refuse_write(fd, (size_t)n) ? fault_errno : real_posix_fallocate(fd, at, n); }

static int writes(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)) != 0; }
static mode_t mode_of(int flags, va_list ap) { return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0; }

int open(const char *path, int flags, ...) {
    REAL(open); va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (writes(flags) && refuse_change(AT_FDCWD, path, 0)) return -1;
    return real_open(path, flags, mode);
}
int open64(const char *path, int flags, ...) {
    REAL(open64); va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (writes(flags) && refuse_change(AT_FDCWD, path, 0)) return -1;
    return real_open64(path, flags, mode);
}
int openat(int dirfd, const char *path, int flags, ...) {
    REAL(openat); va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (writes(flags) && refuse_change(dirfd, path, 0)) return -1;
    return real_openat(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(openat64); va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (writes(flags) && refuse_change(dirfd, path, 0)) return -1;
    return real_openat64(dirfd, path, flags, mode);
}
int mkdir(const char *path, mode_t mode) { REAL(mkdir); return refuse_change(AT_FDCWD, path, 1) ? -1 : real_mkdir(path, mode); }
int mkdirat(int dirfd, const char *path, mode_t mode) { REAL(mkdirat); return refuse_change(dirfd, path, 1) ? -1 : real_mkdirat(dirfd, path, mode); }
int rename(const char *from, const char *to) { REAL(rename); return refuse_change(AT_FDCWD, to, 0) ? -1 : real_rename(from, to); }
int renameat(int fromfd, const char *from, int tofd, const char *to) { REAL(renameat); return refuse_change(tofd, to, 0) ? -1 : real_renameat(fromfd, from, tofd, to); }
int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned flags) { REAL(renameat2); return refuse_change(tofd, to, 0) ? -1 : real_renameat2(fromfd, from, tofd, to, flags); }
int unlink(const char *path) { REAL(unlink); return refuse_change(AT_FDCWD, path, 0) ? -1 : real_unlink(path); }
int unlinkat(int dirfd, const char *path, int flags) { REAL(unlinkat); return refuse_change(dirfd, path, 0) ? -1 : real_unlinkat(dirfd, path, flags); }
int rmdir(const char *path) { REAL(rmdir); return refuse_change(AT_FDCWD, path, 0) ? -1 : real_rmdir(path); }
