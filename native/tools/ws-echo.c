/*
 * A minimal WebSocket echo server in C (one thread, epoll), for measuring what the load generator and
 * the proxies can do when the backend is not the limit: the uWS echo backend (loadtest/echo-backend.ts)
 * answers about 0.8M messages/s on one core of the reference machine, below what one generator thread
 * or a proxy reaches. It does only what an echo target needs: the upgrade (SHA-1 accept), unmasking,
 * and each data frame sent back as it came (opcode and FIN kept), pings answered, closes echoed.
 *
 *   native/build/Release/ws-echo PORT [PORT...]     (127.0.0.1; port 0 picks one, printed on stdout)
 *
 * Replies of one epoll round are queued per connection and written once at the end of the round.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_SIZE (256 * 1024)
#define MAX_EVENTS 256
#define MAX_LISTENERS 16
#define MAX_OUT (64u * 1024 * 1024) /* a client that stops reading is dropped past this */

/* ---- SHA-1 (RFC 3174) and base64, for Sec-WebSocket-Accept ---------------------------------------- */

static uint32_t rol(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

static void sha1(const uint8_t *data, size_t length, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  uint8_t block[64];
  uint64_t bits = (uint64_t)length * 8;
  size_t total = ((length + 8) / 64 + 1) * 64;
  for (size_t off = 0; off < total; off += 64) {
    for (size_t i = 0; i < 64; i++) {
      size_t at = off + i;
      block[i] = at < length ? data[at] : at == length ? 0x80 : 0;
    }
    if (off + 64 == total) {
      for (int i = 0; i < 8; i++) block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    uint32_t w[80];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 | (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(h[i] >> 24), out[4 * i + 1] = (uint8_t)(h[i] >> 16), out[4 * i + 2] = (uint8_t)(h[i] >> 8), out[4 * i + 3] = (uint8_t)h[i];
  }
}

static void base64(const uint8_t *in, size_t length, char *out) {
  static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < length; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < length ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < length ? in[i + 2] : 0);
    out[o++] = table[(v >> 18) & 63];
    out[o++] = table[(v >> 12) & 63];
    out[o++] = i + 1 < length ? table[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < length ? table[v & 63] : '=';
  }
  out[o] = 0;
}

/* ---- connections ---------------------------------------------------------------------------------- */

typedef struct client {
  int fd;
  int upgraded;
  int dirty;
  uint8_t *in; /* bytes not yet parsed (a split frame or head) */
  size_t in_length, in_capacity;
  uint8_t *out;
  size_t out_length, out_capacity;
  struct client *next_dirty;
} client;

static uint8_t read_buffer[IN_SIZE];
static client *dirty;

static int reserve(client *c, size_t n) {
  if (c->out_length + n <= c->out_capacity) return 0;
  size_t capacity = c->out_capacity ? c->out_capacity : 16384;
  while (capacity < c->out_length + n) capacity *= 2;
  if (capacity > MAX_OUT) return -1;
  uint8_t *grown = realloc(c->out, capacity);
  if (grown == NULL) return -1;
  c->out = grown;
  c->out_capacity = capacity;
  return 0;
}

static void queue(client *c, const void *data, size_t n) {
  if (reserve(c, n) != 0) return;
  memcpy(c->out + c->out_length, data, n);
  c->out_length += n;
  if (!c->dirty) {
    c->dirty = 1;
    c->next_dirty = dirty;
    dirty = c;
  }
}

/* Closed now, freed at the end of the round (through the dirty list: events of this round may name it). */
static void drop(int epoll, client *c) {
  epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  if (!c->dirty) {
    c->dirty = 1;
    c->next_dirty = dirty;
    dirty = c;
  }
}

/* An unmasked server frame with the client frame's first byte, payload unmasked into the queue. */
static int echo_frame(client *c, uint8_t b0, const uint8_t *key, const uint8_t *payload, uint64_t length) {
  uint8_t header[10];
  size_t h = 2;
  header[0] = b0;
  if (length < 126) header[1] = (uint8_t)length;
  else if (length < 65536) {
    header[1] = 126, header[2] = (uint8_t)(length >> 8), header[3] = (uint8_t)length;
    h = 4;
  } else {
    header[1] = 127;
    for (int i = 0; i < 8; i++) header[2 + i] = (uint8_t)(length >> (56 - 8 * i));
    h = 10;
  }
  if (reserve(c, h + length) != 0) return -1;
  queue(c, header, h);
  uint8_t *dst = c->out + c->out_length;
  for (uint64_t i = 0; i < length; i++) dst[i] = payload[i] ^ key[i & 3];
  c->out_length += length;
  return 0;
}

/* Parse `data[0..n)`; returns the bytes consumed (the rest is an incomplete frame), or -1 to drop. */
static long parse(client *c, const uint8_t *data, size_t n) {
  size_t at = 0;
  if (!c->upgraded) {
    const uint8_t *end = NULL;
    for (size_t i = 3; i < n; i++)
      if (data[i] == '\n' && data[i - 1] == '\r' && data[i - 2] == '\n' && data[i - 3] == '\r') {
        end = data + i + 1;
        break;
      }
    if (end == NULL) return n > 16384 ? -1 : 0;
    const char *key = NULL;
    size_t key_length = 0;
    for (const char *line = (const char *)data; line < (const char *)end;) {
      const char *eol = memchr(line, '\n', (size_t)((const char *)end - line));
      if (eol == NULL) break;
      if ((size_t)(eol - line) > 18 && strncasecmp(line, "sec-websocket-key:", 18) == 0) {
        key = line + 18;
        while (*key == ' ') key++;
        key_length = (size_t)(eol - key);
        while (key_length > 0 && (key[key_length - 1] == '\r' || key[key_length - 1] == ' ')) key_length--;
      }
      line = eol + 1;
    }
    if (key == NULL || key_length > 64) return -1;
    char joined[128], accept[32], answer[256];
    memcpy(joined, key, key_length);
    memcpy(joined + key_length, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    uint8_t digest[20];
    sha1((const uint8_t *)joined, key_length + 36, digest);
    base64(digest, 20, accept);
    int length = snprintf(answer, sizeof answer, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    queue(c, answer, (size_t)length);
    c->upgraded = 1;
    at = (size_t)(end - data);
  }
  while (n - at >= 2) {
    const uint8_t *f = data + at;
    uint8_t b0 = f[0], b1 = f[1];
    if (!(b1 & 0x80)) return -1; /* clients must mask */
    uint64_t length = b1 & 0x7f;
    size_t h = 2;
    if (length == 126) {
      if (n - at < 4) break;
      length = (uint64_t)f[2] << 8 | f[3];
      h = 4;
    } else if (length == 127) {
      if (n - at < 10) break;
      length = 0;
      for (int i = 0; i < 8; i++) length = length << 8 | f[2 + i];
      h = 10;
    }
    if (length > MAX_OUT) return -1;
    if (n - at < h + 4 + length) break;
    const uint8_t *key = f + h;
    uint8_t opcode = b0 & 0x0f;
    if (opcode == 0x9) b0 = (uint8_t)((b0 & 0xf0) | 0xa); /* ping: pong */
    if (opcode != 0xa && echo_frame(c, b0, key, key + 4, length) != 0) return -1;
    at += h + 4 + length;
    if (opcode == 0x8) return -1; /* close echoed: flushed, then dropped */
  }
  return (long)at;
}

static void on_readable(int epoll, client *c) {
  for (int rounds = 0; rounds < 16; rounds++) { /* bounded: other connections get their turn */
    ssize_t got = read(c->fd, read_buffer, sizeof read_buffer);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
      drop(epoll, c);
      return;
    }
    if (got < 0) return;
    const uint8_t *data = read_buffer;
    size_t n = (size_t)got;
    if (c->in_length > 0) {
      if (c->in_length + n > c->in_capacity) {
        size_t capacity = c->in_capacity ? c->in_capacity : 4096;
        while (capacity < c->in_length + n) capacity *= 2;
        if (capacity > MAX_OUT + 16) {
          drop(epoll, c);
          return;
        }
        uint8_t *grown = realloc(c->in, capacity);
        if (grown == NULL) {
          drop(epoll, c);
          return;
        }
        c->in = grown;
        c->in_capacity = capacity;
      }
      memcpy(c->in + c->in_length, read_buffer, n);
      c->in_length += n;
      data = c->in;
      n = c->in_length;
    }
    long used = parse(c, data, n);
    if (used < 0) {
      if (c->out_length > 0) (void)!write(c->fd, c->out, c->out_length);
      drop(epoll, c);
      return;
    }
    size_t rest = n - (size_t)used;
    if (rest > 0) {
      if (data == c->in) memmove(c->in, c->in + used, rest);
      else {
        if (rest > c->in_capacity) {
          uint8_t *grown = realloc(c->in, rest);
          if (grown == NULL) {
            drop(epoll, c);
            return;
          }
          c->in = grown;
          c->in_capacity = rest;
        }
        memcpy(c->in, data + used, rest);
      }
    }
    c->in_length = rest;
    if ((size_t)got < sizeof read_buffer) return;
  }
}

static void flush_all(int epoll) {
  client *list = dirty, *freed = NULL;
  dirty = NULL;
  while (list != NULL) {
    client *c = list;
    list = c->next_dirty;
    c->dirty = 0;
    if (c->fd < 0) {
      c->next_dirty = freed;
      freed = c;
      continue;
    }
    size_t done = 0;
    while (done < c->out_length) {
      ssize_t w = write(c->fd, c->out + done, c->out_length - done);
      if (w <= 0) break;
      done += (size_t)w;
    }
    memmove(c->out, c->out + done, c->out_length - done);
    c->out_length -= done;
    struct epoll_event ev = {.events = EPOLLIN | (c->out_length > 0 ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &ev);
  }
  while (freed != NULL) {
    client *c = freed;
    freed = c->next_dirty;
    free(c->in);
    free(c->out);
    free(c);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: ws-echo PORT [PORT...]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int epoll = epoll_create1(0);
  int listeners[MAX_LISTENERS], count = 0;
  for (int i = 1; i < argc && count < MAX_LISTENERS; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[i])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 4096) != 0) {
      perror("ws-echo: listen");
      return 1;
    }
    socklen_t length = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &length);
    printf("%d\n", ntohs(addr.sin_port));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    ev.data.u64 = (uint64_t)count; /* listener indexes are small; clients are pointers */
    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
    listeners[count++] = fd;
  }
  fflush(stdout);
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(epoll, events, MAX_EVENTS, -1);
    for (int i = 0; i < n; i++) {
      if (events[i].data.u64 < (uint64_t)count) {
        int listener = listeners[events[i].data.u64];
        for (int k = 0; k < 64; k++) {
          int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          client *c = calloc(1, sizeof *c);
          if (c == NULL) {
            close(fd);
            continue;
          }
          c->fd = fd;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      client *c = events[i].data.ptr;
      if (c->fd < 0) continue;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(epoll, c);
      if (c->fd >= 0 && (events[i].events & EPOLLOUT) && !c->dirty) {
        c->dirty = 1;
        c->next_dirty = dirty;
        dirty = c;
      }
    }
    flush_all(epoll);
  }
}
