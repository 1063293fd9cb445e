// Bench target: touches N MiB of anonymous memory, then beats every millisecond and records the largest
// gap between two beats in a shared file (argv[2], mmapped), so the bench can read how long a dump paused
// it. Layout of the file: u64 largest gap in microseconds (the bench writes 0 to reset), u64 beats.
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: heartbeat MIB SHARED_FILE\n");
    return 2;
  }
  const size_t bytes = (size_t)strtoull(argv[1], NULL, 10) << 20;
  char* mem = bytes ? malloc(bytes) : NULL;
  if (bytes && !mem) return 1;
  // Distinct non-zero bytes per page, so no writer can skip them as zero pages.
  for (size_t i = 0; i < bytes; i += 4096) memset(mem + i, (int)(i >> 12) | 1, 4096);
  const int fd = open(argv[2], O_RDWR);
  if (fd < 0) return 1;
  volatile uint64_t* shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (shared == MAP_FAILED) return 1;
  printf("ready\n");
  fflush(stdout);
  uint64_t last = now_us();
  for (;;) {
    usleep(1000);
    const uint64_t t = now_us();
    if (t - last > shared[0]) shared[0] = t - last;
    shared[1]++;
    last = t;
  }
}
