/*
 * The load generator client's reading side (loadgen.c has the rest): the answer to the upgrade, then a
 * streaming parse of the server's frames that keeps nothing of a payload but its 8-byte send stamp
 * and at most a 125-byte control payload, so a frame split across reads costs no buffer.
 */
#include "loadgen.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_HEAD (16 * 1024)

static bool header_is(const char *line, size_t length, const char *name) {
  size_t n = strlen(name);
  if (length < n) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = line[i];
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
    if (ch != name[i]) return false;
  }
  return true;
}

/* The answer to the upgrade: 101 with our Sec-WebSocket-Accept, or a failure. Returns the offset of
 * the first frame byte in `data`, or -1 (incomplete, or failed and finished). */
static long parse_head(loadgen *lg, conn *c, lg_conn *lc, const char *data, size_t length) {
  const char *end = NULL;
  for (size_t i = 3; i < length; i++) {
    if (data[i] == '\n' && data[i - 1] == '\r' && data[i - 2] == '\n' && data[i - 3] == '\r') {
      end = data + i + 1;
      break;
    }
  }
  if (end == NULL) {
    if (length > MAX_HEAD) {
      lg_set_failure(lc, LG_R_BAD_RESPONSE, 0);
      lg_finish(lg, c, lc, false);
    }
    return -1;
  }
  if (length < 12 || memcmp(data, "HTTP/1.", 7) != 0 || data[8] != ' ') {
    lg_set_failure(lc, LG_R_BAD_RESPONSE, 0);
    lg_finish(lg, c, lc, false);
    return -1;
  }
  int status = (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
  if (status != 101) {
    lg_set_failure(lc, LG_R_STATUS, status);
    lg_finish(lg, c, lc, false);
    return -1;
  }
  bool accepted = false;
  for (const char *line = data; line < end;) {
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (eol == NULL) break;
    size_t line_length = (size_t)(eol - line);
    if (header_is(line, line_length, "sec-websocket-accept:")) {
      const char *v = line + 21, *stop = eol;
      while (v < stop && (*v == ' ' || *v == '\t')) v++;
      while (stop > v && (stop[-1] == '\r' || stop[-1] == ' ' || stop[-1] == '\t')) stop--;
      accepted = (size_t)(stop - v) == strlen(lc->accept) && memcmp(v, lc->accept, (size_t)(stop - v)) == 0;
    }
    line = eol + 1;
  }
  if (!accepted) {
    lg_set_failure(lc, LG_R_BAD_ACCEPT, 0);
    lg_finish(lg, c, lc, false);
    return -1;
  }
  conn_set_deadline(c, 0);
  c->state = CONN_FRAMING;
  c->owner->stats.framing++;
  lc->state = LG_OPEN;
  lc->was_open = true;
  lg->open_count++;
  lg->opened++;
  if (lg->held_count == lg->held_capacity) {
    uint32_t capacity = lg->held_capacity == 0 ? 256 : lg->held_capacity * 2;
    uint32_t *grown = realloc(lg->held, capacity * sizeof *grown);
    if (grown != NULL) {
      lg->held = grown;
      lg->held_capacity = capacity;
    }
  }
  if (lg->held_count < lg->held_capacity) lg->held[lg->held_count++] = c->id;
  lg_report_open(lg, c, lc);
  return end - data;
}

/* A pushed message (LG_RECEIVE): its stamp is the publisher's Unix time in ms (Float64), read against
 * this machine's real-time clock, the one the publisher's performance.timeOrigin comes from. */
static void pushed(loadgen *lg, lg_conn *lc, uint64_t length, uint64_t now) {
  double sent;
  memcpy(&sent, &lc->message_stamp, sizeof sent);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double late_us = ((double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6 - sent) * 1e3;
  uint64_t micros = late_us > 0 && late_us < (double)LG_HIST_MAX ? (uint64_t)(late_us + 0.5) : 0;
  lg_hist_record(lg->recent, micros);
  if (now < lg->measure_start) return;
  lg->received++;
  lc->received++;
  lg->bytes_received += length;
  lg_hist_record(lg->rtt, micros);
}

/* A complete message: count it, record its round trip, and (closed loop) earn one more send. */
static void message(loadgen *lg, conn *c, lg_conn *lc, uint64_t now) {
  lg->raw_received++;
  uint64_t length = lc->message_length;
  if (lg->scenario == LG_RECEIVE) {
    /* Text messages are the server's own (a subscribed notice): counted in raw_received only. */
    if (lc->stamped && lc->opcode != 0x1) pushed(lg, lc, length, now);
  } else if (lc->stamped) {
    uint64_t stamp = lc->message_stamp;
    if (now >= stamp) lg_hist_record(lg->recent, (now - stamp + 500) / 1000);
    if (stamp >= lg->measure_start) {
      lg->received++;
      lc->received++;
      lg->bytes_received += length;
      if (length != lg->size) lg->corrupt++;
      lg_hist_record(lg->rtt, now >= stamp ? (now - stamp + 500) / 1000 : 0);
    }
  }
  if (lg->running && lg->scenario == LG_THROUGHPUT) lg_owe(lg, c, lc, 1);
}

/* The peer's close: answer it (unless we started the close) and let TCP finish. */
static void close_frame(loadgen *lg, conn *c, lg_conn *lc, const uint8_t *payload, size_t length) {
  uint16_t code = length >= 2 ? (uint16_t)((payload[0] << 8) | payload[1]) : 1005;
  lc->peer_code = code;
  if (lc->state == LG_OPEN) {
    lg_set_failure(lc, LG_R_CLOSED, 0);
    lc->state = LG_CLOSING;
    if (!(c->flags & F_CLOSE_SENT)) frames_send_close(c, code == 1005 ? 1000 : code, NULL, 0);
  }
  lg_finish(lg, c, lc, true);
}

/* A frame's header is in `h` (complete): start it. Returns false when the connection ended. */
static bool begin_frame(loadgen *lg, conn *c, lg_conn *lc, const uint8_t *h, uint64_t *payload_length) {
  uint8_t b1 = h[1];
  uint64_t length = b1 & 0x7f;
  if (length == 126) length = ((uint64_t)h[2] << 8) | h[3];
  else if (length == 127) {
    length = 0;
    for (int i = 2; i < 10; i++) length = (length << 8) | h[i];
  }
  if (b1 & 0x80) {
    lg_set_failure(lc, LG_R_MASKED, 0);
    lg_finish(lg, c, lc, false);
    return false;
  }
  uint8_t opcode = h[0] & 0x0f;
  lc->opcode = opcode;
  lc->fin = (h[0] & 0x80) != 0;
  lc->payload_left = length;
  lc->control_length = 0;
  if (opcode == 0x1 || opcode == 0x2) {
    lc->message_length = length;
    lc->stamped = false;
    lc->stamp_have = 0;
  } else if (opcode == 0x0) {
    lc->message_length += length;
  } else if (length > 125) {
    lg_set_failure(lc, LG_R_BAD_RESPONSE, 0);
    lg_finish(lg, c, lc, false);
    return false;
  }
  *payload_length = length;
  return true;
}

/* The frame whose payload just ended. Returns false when the connection ended. */
static bool end_frame(loadgen *lg, conn *c, lg_conn *lc, uint64_t now) {
  uint8_t opcode = lc->opcode;
  if (opcode <= 0x2) {
    if (lc->fin) message(lg, c, lc, now);
    return true;
  }
  if (opcode == 0x8) {
    close_frame(lg, c, lc, lc->control, lc->control_length);
    return false;
  }
  if (opcode == 0x9 && !(c->flags & F_CLOSE_SENT)) frames_send(c, 0xa, lc->control, lc->control_length);
  return true;
}

static void take_stamp(lg_conn *lc, const uint8_t *p, size_t n) {
  size_t want = 8u - (size_t)lc->stamp_have;
  size_t take = want < n ? want : n;
  memcpy(lc->stamp + lc->stamp_have, p, take);
  lc->stamp_have = (uint8_t)(lc->stamp_have + take);
  if (lc->stamp_have == 8) {
    memcpy(&lc->message_stamp, lc->stamp, 8);
    lc->stamped = true;
  }
}

/* Frames from `p[0..n)`: a frame that lies whole in the read is handled where it lies; a frame split
 * across reads is followed byte by byte, keeping only its header, stamp or control payload. Bounded by
 * n: every pass consumes at least one byte or ends the connection. */
static void parse_frames(loadgen *lg, conn *c, lg_conn *lc, const uint8_t *p, size_t n, uint64_t now) {
  size_t i = 0;
  while (i < n) {
    if (lc->state == LG_DONE || c->state == CONN_CLOSED) return;
    if (!lc->in_frame) {
      const uint8_t *h;
      size_t header;
      if (lc->header_have == 0 && n - i >= 2) {
        uint8_t len7 = p[i + 1] & 0x7f;
        header = len7 < 126 ? 2 : len7 == 126 ? 4 : 10;
        if (n - i < header) {
          memcpy(lc->header, p + i, n - i);
          lc->header_have = (uint8_t)(n - i);
          return;
        }
        h = p + i;
        i += header;
      } else {
        /* the header itself was split: collect it */
        if (lc->header_have < 2) {
          lc->header[lc->header_have++] = p[i++];
          continue;
        }
        uint8_t len7 = lc->header[1] & 0x7f;
        header = len7 < 126 ? 2 : len7 == 126 ? 4 : 10;
        if (lc->header_have < header) {
          lc->header[lc->header_have++] = p[i++];
          if (lc->header_have < header) continue;
        }
        h = lc->header;
      }
      lc->header_have = 0;
      uint64_t length;
      if (!begin_frame(lg, c, lc, h, &length)) return;
      if (length <= n - i) { /* whole frame here: no state kept */
        if (lc->opcode == 0x1 || lc->opcode == 0x2) {
          if (length >= 8) {
            memcpy(&lc->message_stamp, p + i, 8);
            lc->stamped = true;
          }
        } else if (lc->opcode >= 0x8) {
          memcpy(lc->control, p + i, (size_t)length);
          lc->control_length = (uint8_t)length;
        }
        i += (size_t)length;
        lc->payload_left = 0;
        if (!end_frame(lg, c, lc, now)) return;
        continue;
      }
      lc->in_frame = true;
    }
    /* the rest of a frame split across reads */
    size_t take = lc->payload_left < n - i ? (size_t)lc->payload_left : n - i;
    if ((lc->opcode == 0x1 || lc->opcode == 0x2) && lc->stamp_have < 8 && lc->message_length - lc->payload_left < 8) {
      take_stamp(lc, p + i, take);
    } else if (lc->opcode >= 0x8) {
      memcpy(lc->control + lc->control_length, p + i, take);
      lc->control_length = (uint8_t)(lc->control_length + take);
    }
    i += take;
    lc->payload_left -= take;
    if (lc->payload_left == 0) {
      lc->in_frame = false;
      if (!end_frame(lg, c, lc, now)) return;
    }
  }
}

void loadgen_on_read(conn *c, ssize_t nread, const uv_buf_t *buf) {
  upstream_env *e = c->owner;
  loadgen *lg = e->loadgen;
  lg_conn *lc = lg_of(c);
  if (nread < 0) {
    if (c->state == CONN_CLOSED || lc->state == LG_DONE) {
      conn_finish(c, false);
      return;
    }
    if (nread == UV_EOF) lg_set_failure(lc, LG_R_CLOSED, 0);
    else lg_set_failure(lc, lg_classify((int)nread), (int)nread);
    lg_finish(lg, c, lc, false);
    return;
  }
  if (c->state == CONN_CLOSED || lc->state == LG_DONE) return; /* lingering: dropped */
  e->stats.bytes_in += (uint64_t)nread;
  const uint8_t *data = (const uint8_t *)buf->base;
  size_t length = (size_t)nread;
  if (lc->state == LG_UPGRADING) {
    /* the head usually comes in one read: parse it in place; keep a copy only while it is split */
    const char *head = (const char *)data;
    size_t head_length = length;
    if (lc->head_length > 0) {
      char *grown = realloc(lc->head, lc->head_length + length);
      if (grown == NULL) {
        lg_set_failure(lc, LG_R_ERROR, UV_ENOMEM);
        lg_finish(lg, c, lc, false);
        return;
      }
      memcpy(grown + lc->head_length, data, length);
      lc->head = grown;
      lc->head_length += (uint32_t)length;
      head = grown;
      head_length = lc->head_length;
    }
    long at = parse_head(lg, c, lc, head, head_length);
    if (at < 0) {
      if (lc->state == LG_UPGRADING && lc->head_length == 0) { /* incomplete: keep it */
        lc->head = malloc(length);
        if (lc->head == NULL) {
          lg_set_failure(lc, LG_R_ERROR, UV_ENOMEM);
          lg_finish(lg, c, lc, false);
          return;
        }
        memcpy(lc->head, data, length);
        lc->head_length = (uint32_t)length;
      }
      return;
    }
    /* frames that came with the 101 (from the copy, when the head was split) */
    size_t rest = head_length - (size_t)at;
    const uint8_t *frames = (const uint8_t *)head + at;
    uint8_t *copy = NULL;
    if (lc->head_length > 0 && rest > 0) {
      copy = malloc(rest);
      if (copy != NULL) memcpy(copy, frames, rest);
      frames = copy;
    }
    free(lc->head);
    lc->head = NULL;
    lc->head_length = 0;
    if (rest > 0 && frames != NULL) parse_frames(lg, c, lc, frames, rest, uv_hrtime());
    free(copy);
    return;
  }
  parse_frames(lg, c, lc, data, length, uv_hrtime());
}

