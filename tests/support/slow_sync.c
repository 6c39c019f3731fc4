/*
 * Slow storage for tests and benchmarks: an LD_PRELOAD library that makes fsync() and
 * fdatasync() take ORIGIN_SLOW_SYNC_MS milliseconds longer, as a disk with that sync time
 * would (a device-mapper delay target or a FUSE file system needs privileges a test run may
 * not have). With ORIGIN_SYNC_TRACE set to a file name, each sync appends "begin <path>" and
 * "end <path>" lines to that file, so a test can act while a given file is being synced.
 *
 *     cc -shared -fPIC -O2 -o slow_sync.so slow_sync.c -ldl
 *     LD_PRELOAD=./slow_sync.so ORIGIN_SLOW_SYNC_MS=200 nginx ...
 *
 * The settings are read when the library loads: nginx clears the environment of its workers,
 * which inherit the values from the master.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char trace_file[4096];
static long delay_ms;

__attribute__((constructor)) static void settings(void)
{
    const char *log = getenv("ORIGIN_SYNC_TRACE");
    const char *ms = getenv("ORIGIN_SLOW_SYNC_MS");

    if (log != NULL) {
        snprintf(trace_file, sizeof(trace_file), "%s", log);
    }
    delay_ms = ms ? strtol(ms, NULL, 10) : 0;
}

static void trace(const char *what, int fd)
{
    const char *log = trace_file;
    char link[64], path[4096], line[4200];
    ssize_t n;
    int out;

    if (*log == '\0') {
        return;
    }
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    path[n > 0 ? n : 0] = '\0';
    n = snprintf(line, sizeof(line), "%s %s\n", what, path);
    out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (out >= 0) {
        /* One write() per line: O_APPEND keeps lines of concurrent writers whole. */
        if (write(out, line, (size_t) n) < 0) {
            /* nothing to do: tracing is best effort */
        }
        close(out);
    }
}

static void slow_down(void)
{
    long delay = delay_ms;
    struct timespec ts;

    if (delay <= 0) {
        return;
    }
    ts.tv_sec = delay / 1000;
    ts.tv_nsec = (delay % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
        /* interrupted by a signal: sleep the rest */
    }
}

static int traced(const char *name, int fd)
{
    int (*real)(int) = (int (*)(int)) dlsym(RTLD_NEXT, name);
    int rc;

    trace("begin", fd);
    slow_down();
    rc = real ? real(fd) : -1;
    trace("end", fd);
    return rc;
}

int fsync(int fd)
{
    return traced("fsync", fd);
}

int fdatasync(int fd)
{
    return traced("fdatasync", fd);
}
