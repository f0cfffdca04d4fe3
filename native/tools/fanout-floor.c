/*
 * The floor under the fan-out bench (bench/fanout.ts): what the kernel alone charges for writing one small
 * message to each of N loopback TCP sockets, with no proxy, no WebSocket library and no JavaScript. A writer
 * sends a 66-byte frame (a 64 B binary WebSocket message) to each of N sockets per publish in a plain loop of
 * write(2), several publishes in one write when they are due together; a child reads them with epoll and
 * records publish-to-receive latency from the CLOCK_MONOTONIC stamp in each frame. Sluice's fan-out makes
 * the same write per subscriber (uWebSockets.js corks what a loop turn publishes to one socket into one
 * write), so this is the least CPU and latency any proxy can reach on this machine for that row: on
 * loopback the writer's system call also runs the receiving side of TCP and the wake-up of the reader.
 *
 * Build and run (both cores; about 10 s):
 *   cc -O2 -o /tmp/fanout-floor native/tools/fanout-floor.c && /tmp/fanout-floor 8000 5 50 0 1
 * Arguments: sockets, publishes per second, publishes, the writer's CPU and the reader's (-1: not pinned).
 * Prints one JSON line.
 * `npm run bench` runs it as the fan-out table's floor row (bench/fanout-floor.ts).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME 66

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_us(int who, double *sys) {
  struct rusage ru;
  getrusage(who, &ru);
  *sys = ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
  return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + *sys;
}

static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

static int cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* The reader: N sockets from 127.0.0.2-51, epoll, latency of every frame; reports on its stdout pipe. */
static void reader(int port, int n, long expected, int out, int cpu) {
  pin(cpu);
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000002 + i % 50)};
    bind(fd, (struct sockaddr *)&src, sizeof src);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) { perror("connect"); exit(1); }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  float *lat = malloc(sizeof(float) * expected);
  long got = 0;
  char buf[65536];
  struct epoll_event evs[512];
  double sys0, cpu0 = cpu_us(RUSAGE_SELF, &sys0);
  while (got < expected) {
    int k = epoll_wait(ep, evs, 512, 5000);
    if (k <= 0) break;
    double t = now_ms();
    for (int i = 0; i < k; i++) {
      ssize_t r = read(evs[i].data.fd, buf, sizeof buf);
      for (ssize_t at = 0; at + FRAME <= r && got < expected; at += FRAME) {
        double sent;
        memcpy(&sent, buf + at + 2, sizeof sent);
        lat[got++] = (float)(t - sent);
      }
    }
  }
  double sys1, cpu1 = cpu_us(RUSAGE_SELF, &sys1);
  qsort(lat, got, sizeof(float), cmp);
  dprintf(out, "%ld %.3f %.3f %.3f %.3f\n", got, got ? lat[got / 2] : 0, got ? lat[(long)(got * 0.99)] : 0, got ? lat[got - 1] : 0,
          got ? (cpu1 - cpu0) / got : 0);
  exit(0);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 8000;
  double rate = argc > 2 ? atof(argv[2]) : 5;
  int publishes = argc > 3 ? atoi(argv[3]) : 50;
  int writer_cpu = argc > 4 ? atoi(argv[4]) : 0, reader_cpu = argc > 5 ? atoi(argv[5]) : 1;
  signal(SIGPIPE, SIG_IGN);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  bind(ls, (struct sockaddr *)&addr, sizeof addr);
  listen(ls, 65535);
  socklen_t len = sizeof addr;
  getsockname(ls, (struct sockaddr *)&addr, &len);
  int pipefd[2];
  pipe(pipefd);
  pid_t child = fork();
  if (child == 0) reader(ntohs(addr.sin_port), n, (long)n * publishes, pipefd[1], reader_cpu);
  pin(writer_cpu);
  int *fds = malloc(sizeof(int) * n);
  for (int i = 0; i < n; i++) {
    fds[i] = accept(ls, NULL, NULL);
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  usleep(200000);
  /* A round writes every publish due since the last one, in one write per socket (as uWebSockets.js corks
   * what a loop turn publishes to one subscriber): above the rate one round can serve, rounds grow. The
   * publish time in each frame is its due time, so latency includes the wait for the round to start. */
  unsigned char *frames = malloc((size_t)FRAME * publishes);
  double sys0, cpu0 = cpu_us(RUSAGE_SELF, &sys0), worst = 0, start = now_ms() + 10;
  int rounds = 0;
  for (int done = 0; done < publishes;) {
    double due = start + done * 1000.0 / rate, t;
    while ((t = now_ms()) < due) usleep((useconds_t)((due - t) * 1000));
    int k = 0;
    while (done + k < publishes && start + (done + k) * 1000.0 / rate <= t) {
      double stamp = start + (done + k) * 1000.0 / rate;
      unsigned char *f = frames + (size_t)FRAME * k;
      f[0] = 0x82;
      f[1] = 64;
      memcpy(f + 2, &stamp, sizeof stamp);
      k++;
    }
    for (int i = 0; i < n; i++)
      if (write(fds[i], frames, (size_t)FRAME * k) != FRAME * k) { perror("write"); return 1; }
    double took = now_ms() - t;
    if (took > worst) worst = took;
    done += k;
    rounds++;
  }
  double sys1, cpu1 = cpu_us(RUSAGE_SELF, &sys1);
  char line[256] = {0};
  ssize_t r = read(pipefd[0], line, sizeof line - 1);
  waitpid(child, NULL, 0);
  long got = 0;
  double p50 = 0, p99 = 0, max = 0, reader_us = 0;
  if (r > 0) sscanf(line, "%ld %lf %lf %lf %lf", &got, &p50, &p99, &max, &reader_us);
  long deliveries = (long)n * publishes;
  printf("{\"sockets\":%d,\"rate\":%g,\"publishes\":%d,\"received\":%ld,\"writerCpuPerDeliveryUs\":%.3f,\"writerSystemShare\":%.2f,"
         "\"rounds\":%d,\"slowestRoundMs\":%.1f,\"readerCpuPerDeliveryUs\":%.3f,\"p50Ms\":%.1f,\"p99Ms\":%.1f,\"maxMs\":%.1f}\n",
         n, rate, publishes, got, (cpu1 - cpu0) / deliveries, (sys1 - sys0) / (cpu1 - cpu0), rounds, worst, reader_us, p50, p99, max);
  return 0;
}
