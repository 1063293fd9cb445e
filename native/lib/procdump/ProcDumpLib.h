/*
 * ProcDump for Linux 3.x's library API, as libtripdump implements it: a program written against
 * ProcDump's ProcDumpLib.h builds with this header and runs against libtripdump.so unchanged.
 *
 *   #include "ProcDumpLib.h"           cc app.c -I<pkg>/native/lib/procdump -L<dir> -ltripdump
 *   #include <procdump/ProcDumpLib.h>  cc app.c -I<pkg>/native/lib -L<dir> -ltripdump
 *
 * (the second is ProcDump's installed layout; <dir> and -Wl,-rpath: see tripdump.h.) The dump is written by
 * the same dumper as tripdump_write_core (tripdump.h): an ELF core that gdb, lldb and eu-stack load, mode
 * 0600, under its final name only when complete, the target paused as briefly as snapshot mode allows.
 */
#ifndef PROCDUMP_LIB_H
#define PROCDUMP_LIB_H

#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* `dumpMask`: use the target's own /proc/PID/coredump_filter. */
#define PD_DUMP_MASK_DEFAULT (-1)

/*
 * Writes a core of process `processId` now.
 *
 *   processId   a process id, > 0
 *   dumpPath    the dump's path without its suffix: the file written is dumpPath + "." + processId
 *               (ProcDump's name; trailing slashes are dropped first, so "dir/" gives "dir.<pid>"). Its
 *               folder must exist. Not NULL, not empty.
 *   dumpMask    PD_DUMP_MASK_DEFAULT, or a coredump_filter mask (core(5)) for this dump; as when it is
 *               written to coredump_filter, only bits 0-8 count. The target's own coredump_filter is
 *               never changed (ProcDump sets it for the dump and restores it).
 *   bOverwrite  true: replace an existing file of that name; false: fail if there is one.
 *   error       optional: on failure receives a malloc'd message naming what failed (the path, the pid),
 *               to be freed with pdFreeError; set to NULL on success.
 *
 * Returns 0 on success, -1 on failure, with errno set to the reason: EINVAL (processId <= 0, dumpPath
 * NULL or empty, dumpMask below -1), ESRCH (no such process), EPERM (not permitted, or already traced),
 * EEXIST (the file exists and bOverwrite is false), ENOENT/ENOTDIR (no such folder), EISDIR, ENOSPC,
 * ENOTSUP (no core writer for this CPU architecture yet), ECHILD (the dumper process died). On failure no
 * file is left (an existing one is untouched) and the target runs on as before.
 */
int pdWriteDump(pid_t processId, const char* dumpPath, int dumpMask, bool bOverwrite, char** error);

/* Frees a message from pdWriteDump; NULL is fine. */
void pdFreeError(char* error);

#ifdef __cplusplus
}
#endif

#endif /* PROCDUMP_LIB_H */
