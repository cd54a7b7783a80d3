/*
 * Power-cut journal: an LD_PRELOAD library that records, for the files under the roots named
 * by DAMOCLES_POWERCUT_ROOTS (colon-separated absolute paths), which ones were changed since
 * they were last fsynced and which directory entries were made since their directory was last
 * fsynced. The test harness (tests/it/powercut.rs) kills the processes at a chosen moment and
 * undoes, from the journal, what a power cut would lose: entries never made durable are
 * removed and files written since their last fsync are emptied.
 *
 * Journal lines (DAMOCLES_POWERCUT_JOURNAL, appended by every process):
 *   W <path>   the file was created, truncated, written, or mapped shared and writable
 *   S <path>   fsync/fdatasync of the file or directory
 *   N <path>   a new entry: a file created, a directory made, a link
 *   R <from>\t<to>   a rename: what is known of <from> moves to <to>, a new entry
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int journal = -2;
static char roots[4096];

static void init(void) {
    if (journal != -2) return;
    journal = -1;
    const char *j = getenv("DAMOCLES_POWERCUT_JOURNAL");
    const char *r = getenv("DAMOCLES_POWERCUT_ROOTS");
    if (!j || !r) return;
    snprintf(roots, sizeof roots, "%s", r);
    journal = (int)syscall(SYS_openat, AT_FDCWD, j, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

static int under_roots(const char *path) {
    const char *p = roots;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0 && strncmp(path, p, n) == 0 && (path[n] == '/' || path[n] == 0)) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

/* Whether `path` is a directory holding a root: its fsync makes the root's entry durable. */
static int above_a_root(const char *path) {
    size_t n = strlen(path);
    const char *p = roots;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > n && strncmp(p, path, n) == 0 && p[n] == '/') return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static void record(char kind, const char *path) {
    init();
    if (journal < 0 || !path || path[0] != '/') return;
    if (!under_roots(path) && !(kind == 'S' && above_a_root(path))) return;
    char line[PATH_MAX + 4];
    int n = snprintf(line, sizeof line, "%c %s\n", kind, path);
    if (n > 0 && n < (int)sizeof line) {
        int saved = errno;
        (void)!write(journal, line, (size_t)n);
        errno = saved;
    }
}

/* The absolute form of `path` relative to `dirfd` (no `..` resolution; enough for tests). */
static void absolute(int dirfd, const char *path, char *out) {
    out[0] = 0;
    if (!path) return;
    if (path[0] == '/') { snprintf(out, PATH_MAX, "%s", path); return; }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) return;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        if (n <= 0) return;
        base[n] = 0;
    }
    snprintf(out, PATH_MAX, "%s/%s", base, path);
}

static void record_fd(char kind, int fd) {
    init();
    if (journal < 0 || fd < 0) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    record(kind, path);
}

#define REAL(name, ret, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);

static int writes(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0; }

static int open_common(int dirfd, const char *path, int flags, mode_t mode, int at, int large) {
    char abs[PATH_MAX];
    int existed = 1;
    if (writes(flags)) {
        absolute(dirfd, path, abs);
        struct stat st;
        existed = fstatat(dirfd, path, &st, 0) == 0;
    }
    int fd;
    if (at) {
        if (large) { REAL(openat64, int, int, const char *, int, ...); fd = real_openat64(dirfd, path, flags, mode); }
        else { REAL(openat, int, int, const char *, int, ...); fd = real_openat(dirfd, path, flags, mode); }
    } else {
        if (large) { REAL(open64, int, const char *, int, ...); fd = real_open64(path, flags, mode); }
        else { REAL(open, int, const char *, int, ...); fd = real_open(path, flags, mode); }
    }
    /* Opening for write changes nothing by itself; truncating or creating does. */
    if (fd >= 0 && writes(flags)) {
        if (!existed) record('N', abs);
        if (!existed || (flags & O_TRUNC)) record('W', abs);
    }
    return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    return open_common(AT_FDCWD, path, flags, m, 0, 0);
}
int open64(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    return open_common(AT_FDCWD, path, flags, m, 0, 1);
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    return open_common(dirfd, path, flags, m, 1, 0);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    return open_common(dirfd, path, flags, m, 1, 1);
}
int creat(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open64(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write, ssize_t, int, const void *, size_t);
    ssize_t r = real_write(fd, buf, n);
    if (r > 0 && fd != journal && fd > 2) record_fd('W', fd);
    return r;
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite, ssize_t, int, const void *, size_t, off_t);
    ssize_t r = real_pwrite(fd, buf, n, off);
    if (r > 0) record_fd('W', fd);
    return r;
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
    ssize_t r = real_pwrite64(fd, buf, n, off);
    if (r > 0) record_fd('W', fd);
    return r;
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev, ssize_t, int, const struct iovec *, int);
    ssize_t r = real_writev(fd, iov, cnt);
    if (r > 0 && fd > 2) record_fd('W', fd);
    return r;
}
int ftruncate(int fd, off_t len) {
    REAL(ftruncate, int, int, off_t);
    int r = real_ftruncate(fd, len);
    if (r == 0) record_fd('W', fd);
    return r;
}
int ftruncate64(int fd, off_t len) {
    REAL(ftruncate64, int, int, off_t);
    int r = real_ftruncate64(fd, len);
    if (r == 0) record_fd('W', fd);
    return r;
}
/* A shared writable mapping of a file: its pages may be written without a write call. */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    REAL(mmap, void *, void *, size_t, int, int, int, off_t);
    void *r = real_mmap(addr, len, prot, flags, fd, off);
    if (r != MAP_FAILED && fd >= 0 && (prot & PROT_WRITE) && (flags & MAP_SHARED)) record_fd('W', fd);
    return r;
}
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    REAL(mmap64, void *, void *, size_t, int, int, int, off_t);
    void *r = real_mmap64(addr, len, prot, flags, fd, off);
    if (r != MAP_FAILED && fd >= 0 && (prot & PROT_WRITE) && (flags & MAP_SHARED)) record_fd('W', fd);
    return r;
}

int fsync(int fd) {
    REAL(fsync, int, int);
    int r = real_fsync(fd);
    if (r == 0) record_fd('S', fd);
    return r;
}
int fdatasync(int fd) {
    REAL(fdatasync, int, int);
    int r = real_fdatasync(fd);
    if (r == 0) record_fd('S', fd);
    return r;
}

/* A rename moves what is known of `from` (and below it) to `to`: `R <from>\t<to>`. */
static void record_rename(int fd1, const char *from, int fd2, const char *to) {
    init();
    if (journal < 0) return;
    char a[PATH_MAX], b[PATH_MAX], line[2 * PATH_MAX + 4];
    absolute(fd1, from, a);
    absolute(fd2, to, b);
    if (!under_roots(a) && !under_roots(b)) return;
    int n = snprintf(line, sizeof line, "R %s\t%s\n", a, b);
    if (n > 0 && n < (int)sizeof line) {
        int saved = errno;
        (void)!write(journal, line, (size_t)n);
        errno = saved;
    }
}

static void record_new(int dirfd, const char *path) {
    char abs[PATH_MAX];
    absolute(dirfd, path, abs);
    record('N', abs);
}

int rename(const char *from, const char *to) {
    REAL(rename, int, const char *, const char *);
    int r = real_rename(from, to);
    if (r == 0) record_rename(AT_FDCWD, from, AT_FDCWD, to);
    return r;
}
int renameat(int fd1, const char *from, int fd2, const char *to) {
    REAL(renameat, int, int, const char *, int, const char *);
    int r = real_renameat(fd1, from, fd2, to);
    if (r == 0) record_rename(fd1, from, fd2, to);
    return r;
}
int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags) {
    REAL(renameat2, int, int, const char *, int, const char *, unsigned int);
    int r = real_renameat2(fd1, from, fd2, to, flags);
    if (r == 0) record_rename(fd1, from, fd2, to);
    return r;
}
int mkdir(const char *path, mode_t mode) {
    REAL(mkdir, int, const char *, mode_t);
    int r = real_mkdir(path, mode);
    if (r == 0) record_new(AT_FDCWD, path);
    return r;
}
int mkdirat(int dirfd, const char *path, mode_t mode) {
    REAL(mkdirat, int, int, const char *, mode_t);
    int r = real_mkdirat(dirfd, path, mode);
    if (r == 0) record_new(dirfd, path);
    return r;
}
int symlink(const char *target, const char *path) {
    REAL(symlink, int, const char *, const char *);
    int r = real_symlink(target, path);
    if (r == 0) record_new(AT_FDCWD, path);
    return r;
}
int symlinkat(const char *target, int dirfd, const char *path) {
    REAL(symlinkat, int, const char *, int, const char *);
    int r = real_symlinkat(target, dirfd, path);
    if (r == 0) record_new(dirfd, path);
    return r;
}
int link(const char *from, const char *to) {
    REAL(link, int, const char *, const char *);
    int r = real_link(from, to);
    if (r == 0) record_new(AT_FDCWD, to);
    return r;
}
