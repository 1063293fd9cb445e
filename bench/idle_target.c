// Spawns N idle processes for the sampler benchmark and owns their whole lifetime.
//
// usage: idle_target N
//
// Forks N children that each sleep in pause(), prints one child pid per line followed by "ready", then
// waits until stdin reaches EOF (or reads "quit"), or until SIGINT/SIGTERM/SIGHUP arrives. It then
// SIGKILLs every child by pid and reaps each one before exiting with status 0, so the caller knows no pid
// it was given can still be signalled safely. Killing is done here, by the parent, because only the parent
// can be sure a pid still names its child: once reaped, a pid may be reused by an unrelated process.
//
// If this process dies abruptly (SIGKILL), PR_SET_PDEATHSIG makes the kernel kill the children, so the
// benchmark never leaves idle processes behind.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

// Runs in each child: sleep until killed. stdio goes to /dev/null so the children do not hold the
// benchmark's pipes open (the benchmark waits for EOF on them) and still have the usual three fds, which
// gives the fd-count readers something non-zero to report.
static void child_main(pid_t parent, int ready_fd) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(1);
  // The parent may have died between fork() and prctl(); PDEATHSIG would then never fire.
  if (getppid() != parent) _exit(1);
  FILE* null_in = freopen("/dev/null", "r", stdin);
  FILE* null_out = freopen("/dev/null", "w", stdout);
  if (null_in == NULL || null_out == NULL) _exit(1);
  if (dup2(STDOUT_FILENO, STDERR_FILENO) < 0) _exit(1);
  // Tell the parent this child is set up, so "ready" means every child is asleep rather than thousands of
  // fresh children still queued for a core while the benchmark starts timing.
  if (write(ready_fd, "x", 1) != 1) _exit(1);
  // Whatever else the caller let us inherit would make the fd counts depend on how the bench was started.
  close_range(3, ~0U, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (;;) pause();
}

static void kill_and_reap(const pid_t* pids, long count) {
  for (long i = 0; i < count; i++) kill(pids[i], SIGKILL);
  for (long i = 0; i < count; i++) {
    while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) {
    }
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s N\n", argv[0]);
    return 2;
  }
  char* end = NULL;
  long n = strtol(argv[1], &end, 10);
  if (end == argv[1] || *end != '\0' || n < 1 || n > 1000000) {
    fprintf(stderr, "idle_target: bad count '%s'\n", argv[1]);
    return 2;
  }

  // Handlers without SA_RESTART, so a signal interrupts the blocking read() below.
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  // A broken stdout pipe means the benchmark is gone: clean up instead of dying with children alive.
  sigaction(SIGPIPE, &sa, NULL);

  pid_t* pids = calloc((size_t)n, sizeof *pids);
  if (pids == NULL) {
    fprintf(stderr, "idle_target: out of memory\n");
    return 1;
  }
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) {
    fprintf(stderr, "idle_target: pipe: %s\n", strerror(errno));
    return 1;
  }
  const pid_t self = getpid();
  long spawned = 0;
  int status = 0;
  for (; spawned < n && !stop_requested; spawned++) {
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "idle_target: fork failed after %ld children: %s\n", spawned, strerror(errno));
      status = 1;
      break;
    }
    if (pid == 0) child_main(self, ready[1]);
    pids[spawned] = pid;
  }

  close(ready[1]);
  // Every child writes one byte; EOF before all arrived means some died during set-up.
  long settled = 0;
  char sink[4096];
  while (status == 0 && !stop_requested && settled < spawned) {
    ssize_t got = read(ready[0], sink, sizeof sink);
    if (got > 0)
      settled += got;
    else if (got == 0 || errno != EINTR) {
      fprintf(stderr, "idle_target: only %ld of %ld children started\n", settled, spawned);
      status = 1;
    }
  }
  close(ready[0]);

  if (status == 0 && !stop_requested) {
    for (long i = 0; i < spawned; i++) printf("%d\n", (int)pids[i]);
    printf("ready\n");
    if (fflush(stdout) != 0) stop_requested = 1;
    char buf[64];
    while (!stop_requested) {
      ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
      if (got == 0) break;
      if (got < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (got >= 4 && memcmp(buf, "quit", 4) == 0) break;
    }
  }

  kill_and_reap(pids, spawned);
  free(pids);
  return status;
}
