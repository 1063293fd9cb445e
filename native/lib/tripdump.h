/*
 * libtripdump: tripdump's core writer for C and C++ programs.
 *
 *   #include <tripdump.h>      cc app.c -I<pkg>/native/lib -L<dir> -ltripdump -Wl,-rpath,<dir>
 *
 * <dir> is the folder holding libtripdump.so in the installed package: prebuilds/linux-x64 or
 * prebuilds/linux-arm64, or build/Release when it was built from source. The same writer as
 * `tripdump dump` and the Node API (ELF cores that gdb, lldb and eu-stack load; sparse; mode 0600; the
 * file appears under its name only when complete), run the same way: each call forks a short-lived
 * dumper process that does the ptrace work, so the target's ptrace stops never reach the caller's threads
 * (a caller that reaps its children with waitpid(-1) cannot steal them, and a child of the caller can be
 * dumped), and a caller that dies mid-dump takes the dumper with it (the kernel then lets the target go).
 * Thread-safe; the caller's stack may be small (the dump runs on a thread of the dumper's own).
 *
 * libtripdump also exports ProcDump 3.x's pdWriteDump and pdFreeError (header procdump/ProcDumpLib.h),
 * over the same dumper. Compared with pdWriteDump, tripdump_write_core writes the file at exactly `path`
 * (no ".<pid>" appended), returns the errno value itself, and can keep the target stopped (flags).
 */
#ifndef TRIPDUMP_H
#define TRIPDUMP_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* `filter`: use the target's own /proc/PID/coredump_filter. */
#define TRIPDUMP_FILTER_DEFAULT (-1)
/* Largest filter: bits 0-8 of coredump_filter (core(5)). */
#define TRIPDUMP_FILTER_MAX 0x1ff

/* `flags`, or-ed together. */
#define TRIPDUMP_OVERWRITE 0x1u /* replace an existing file at `path` */
#define TRIPDUMP_STOP_MODE 0x2u /* keep every thread stopped while memory is written; default: snapshot */
                                /* mode where possible (the target pauses for the fork of a copy only) */

/*
 * Writes a core of process `pid` to `path`.
 *
 *   pid     a process id, > 0
 *   path    the file to write (its folder must exist); not NULL, not empty
 *   filter  TRIPDUMP_FILTER_DEFAULT or a coredump_filter mask 0..TRIPDUMP_FILTER_MAX for this dump
 *   flags   0 or TRIPDUMP_OVERWRITE | TRIPDUMP_STOP_MODE
 *   error   optional: on failure *error receives a malloc'd message naming what failed (the call, the
 *           path, the pid); free it with tripdump_free_error. Set to NULL on success.
 *
 * Returns 0 on success, else an errno value: EINVAL (bad argument), ESRCH (no such process), EPERM (not
 * permitted, or already traced), EEXIST (path exists and no TRIPDUMP_OVERWRITE), ENOENT/ENOTDIR (no such
 * folder), EISDIR, ENOSPC, ENOTSUP (no core writer for this CPU architecture yet), ECHILD (the dumper
 * process died). On failure no file is left at `path` (an existing one is untouched) and the target runs
 * on as before.
 */
int tripdump_write_core(pid_t pid, const char* path, int filter, unsigned flags, char** error);

/* Frees a message from tripdump_write_core; NULL is fine. */
void tripdump_free_error(char* error);

#ifdef __cplusplus
}
#endif

#endif /* TRIPDUMP_H */
