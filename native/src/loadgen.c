/*
 * The load generator's WebSocket client (`npm run loadtest -- --client native`): the connections of
 * connection.c (connect, write batching per loop phase, deadlines, closing) with a client side of its
 * own, so that one thread can drive millions of round trips per second. Per frame it does only C
 * work: a streaming parse that keeps nothing of a payload but its 8-byte send stamp, latency into a
 * C histogram, and (closed loop) one new masked frame per reply, framed at the flush. JavaScript hears
 * only of opens and closes; counters and histograms are copied out on request (loadgen-api.c).
 *
 * Send stamps are uv_hrtime() nanoseconds in the first 8 payload bytes (little-endian); replies come
 * back to the same thread, so the clock that stamps is the clock that reads.
 */
#include "loadgen.h"

#include <stdlib.h>
#include <string.h>

#define MAX_HEAD (16 * 1024)
/* An open-loop connection whose target stops reading gets no more frames past this many queued bytes. */
#define MAX_QUEUED (64u * 1024 * 1024)

lg_conn *lg_of(conn *c) { return (lg_conn *)(c + 1); }

/* ---- histograms: HDR layout at 3 significant digits (the same buckets as hdr-histogram-js with
 * lowestDiscernibleValue 1), so copying bucket floors into hdr loses nothing ---------------------- */

static uint32_t hist_index(uint64_t v) {
  if (v < 2048) return (uint32_t)v;
  if (v > LG_HIST_MAX) v = LG_HIST_MAX;
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - 10;
  return 2048 + (uint32_t)(shift - 1) * 1024 + (uint32_t)((v >> shift) - 1024);
}

uint64_t lg_hist_value(uint32_t index) {
  if (index < 2048) return index;
  uint32_t shift = (index - 2048) / 1024 + 1;
  uint64_t mantissa = 1024 + (index - 2048) % 1024;
  return mantissa << shift;
}

void lg_hist_record(lg_hist *h, uint64_t micros) {
  if (h == NULL) return;
  h->counts[hist_index(micros < 1 ? 1 : micros)]++;
  h->total++;
}

void lg_hist_reset(lg_hist *h) {
  if (h == NULL || h->total == 0) return;
  memset(h->counts, 0, sizeof h->counts);
  h->total = 0;
}

/* ---- sending ------------------------------------------------------------------------------ */

/* One stamped, masked binary frame of the template body. */
static void send_stamped(loadgen *lg, conn *c, uint64_t now) {
  memcpy(lg->body, &now, 8);
  frames_send(c, 0x2, lg->body, lg->size);
}

static void owe(loadgen *lg, conn *c, lg_conn *lc, uint32_t n) {
  if (lc->owed == 0) {
    if (lg->owed_count == lg->owed_capacity) {
      uint32_t capacity = lg->owed_capacity == 0 ? 256 : lg->owed_capacity * 2;
      uint32_t *grown = realloc(lg->owed, capacity * sizeof *grown);
      if (grown == NULL) return;
      lg->owed = grown;
      lg->owed_capacity = capacity;
    }
    lg->owed[lg->owed_count++] = c->id;
  }
  lc->owed += n;
  conn_mark_dirty(c); /* starts the flush handles; loadgen_before_flush frames what is owed */
}

/* Closed loop: frame every owed message just before the flush, so the stamp leaves out the time the
 * reply waited while the rest of the poll round was read (as the Node client stamps in setImmediate). */
void loadgen_before_flush(upstream_env *e) {
  loadgen *lg = e->loadgen;
  if (lg->owed_count == 0) return;
  uint64_t now = uv_hrtime();
  for (uint32_t i = 0; i < lg->owed_count; i++) {
    conn *c = conn_lookup(e, lg->owed[i]);
    if (c == NULL) continue;
    lg_conn *lc = lg_of(c);
    uint32_t n = lc->owed;
    lc->owed = 0;
    if (!lg->running || lc->state != LG_OPEN) continue;
    for (uint32_t k = 0; k < n && lc->state == LG_OPEN && c->state == CONN_FRAMING; k++) send_stamped(lg, c, now);
    lg->raw_sent += n;
    if (lg->measuring) {
      lg->sent += n;
      lg->bytes_sent += (uint64_t)n * lg->size;
      lc->sent += n;
    }
  }
  lg->owed_count = 0;
}

/* Open loop: the connections of one slot send now, whatever the replies do. */
static void send_slot(loadgen *lg, uint32_t slot, uint64_t scheduled) {
  upstream_env *e = lg->e;
  uint32_t from = lg->slot_start[slot], to = lg->slot_start[slot + 1];
  if (from == to) return;
  uint64_t now = uv_hrtime();
  if (lg->measuring) lg_hist_record(lg->lag, now > scheduled ? (now - scheduled) / 1000 : 0);
  for (uint32_t i = from; i < to; i++) {
    conn *c = conn_lookup(e, lg->slot_ids[i]);
    if (c == NULL) continue;
    lg_conn *lc = lg_of(c);
    if (lc->state != LG_OPEN || c->state != CONN_FRAMING || conn_queued_bytes(c) > MAX_QUEUED) continue;
    send_stamped(lg, c, uv_hrtime());
    lg->raw_sent++;
    if (lg->measuring) {
      lg->sent++;
      lg->bytes_sent += lg->size;
      lc->sent++;
    }
  }
}

static void on_tick(uv_timer_t *timer) {
  loadgen *lg = timer->data;
  if (!lg->running) return;
  uint64_t now = uv_hrtime();
  uint64_t due = (uint64_t)((double)(now - lg->tick_start) / lg->tick_ns);
  /* Catch up on every slot that fell due, so a late timer delays sends but never skips them. */
  for (; lg->next_tick <= due; lg->next_tick++) {
    send_slot(lg, (uint32_t)(lg->next_tick % lg->slot_count), lg->tick_start + (uint64_t)((double)lg->next_tick * lg->tick_ns));
  }
  /* At least 1 ms: libuv runs a timer restarted with 0 inside its callback again in the same pass,
   * with its clock frozen, which would spin here. A late tick is caught up above. */
  double next_at = (double)lg->tick_start + (double)lg->next_tick * lg->tick_ns;
  now = uv_hrtime();
  uint64_t wait_ms = next_at > (double)now ? (uint64_t)((next_at - (double)now + 999999.0) / 1e6) : 1;
  uv_timer_start(&lg->ticker, on_tick, wait_ms == 0 ? 1 : wait_ms, 0);
}

/* Spread the held connections over the interval's slots (interleaved between threads, as the Node
 * client does) and start the ticker. */
static bool start_echo(loadgen *lg) {
  uint32_t slots = lg->interval_ms < 1000 ? lg->interval_ms : 1000;
  if (slots == 0) slots = 1;
  free(lg->slot_start);
  free(lg->slot_ids);
  lg->slot_start = calloc(slots + 1, sizeof *lg->slot_start);
  lg->slot_ids = malloc((lg->held_count + 1) * sizeof *lg->slot_ids);
  if (lg->slot_start == NULL || lg->slot_ids == NULL) return false;
  for (uint32_t i = 0; i < lg->held_count; i++) lg->slot_start[((uint64_t)i * lg->threads + lg->thread) % slots + 1]++;
  for (uint32_t s = 0; s < slots; s++) lg->slot_start[s + 1] += lg->slot_start[s];
  uint32_t *fill = calloc(slots, sizeof *fill);
  if (fill == NULL) return false;
  for (uint32_t i = 0; i < lg->held_count; i++) {
    uint32_t s = (uint32_t)(((uint64_t)i * lg->threads + lg->thread) % slots);
    lg->slot_ids[lg->slot_start[s] + fill[s]++] = lg->held[i];
  }
  free(fill);
  lg->slot_count = slots;
  lg->tick_ns = (double)lg->interval_ms * 1e6 / slots;
  lg->tick_start = uv_hrtime();
  lg->next_tick = 0;
  on_tick(&lg->ticker);
  return true;
}

bool lg_start_traffic(loadgen *lg) {
  lg->running = true;
  if (lg->scenario == LG_ECHO) return start_echo(lg);
  if (lg->scenario == LG_THROUGHPUT) {
    for (uint32_t i = 0; i < lg->held_count; i++) {
      conn *c = conn_lookup(lg->e, lg->held[i]);
      if (c != NULL && lg_of(c)->state == LG_OPEN) owe(lg, c, lg_of(c), lg->in_flight);
    }
  }
  return true;
}

void lg_stop_traffic(loadgen *lg) {
  lg->running = false;
  uv_timer_stop(&lg->ticker);
}

/* ---- events to JavaScript (opens and closes only) ------------------------------------------------ */

static void call_js(loadgen *lg, napi_ref ref, size_t argc, napi_value *argv) {
  napi_env env = lg->e->env;
  napi_value fn, undefined;
  if (ref == NULL || napi_get_reference_value(env, ref, &fn) != napi_ok) return;
  napi_get_undefined(env, &undefined);
  if (napi_call_function(env, undefined, fn, argc, argv, NULL) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}

static void report_open(loadgen *lg, conn *c, lg_conn *lc) {
  upstream_env *e = lg->e;
  if (e->tearing_down) return;
  bool enter = !js_scope_open(e);
  napi_callback_scope scope;
  napi_handle_scope handles;
  if (enter) js_enter(e, &scope, &handles);
  napi_value argv[2];
  napi_create_uint32(e->env, c->id, &argv[0]);
  napi_create_double(e->env, (double)(uv_hrtime() - lc->started_ns) / 1e3, &argv[1]);
  call_js(lg, lg->on_open, 2, argv);
  if (enter) js_leave(e, scope, handles);
}

/* Exactly once per connection: why it ended (LG_R_NONE when we closed it), a detail (HTTP status,
 * libuv error) and the peer's close code (0 when none came). */
static void report_close(loadgen *lg, conn *c, lg_conn *lc) {
  if (lc->state == LG_DONE) return;
  bool was_open = lc->was_open;
  lc->state = LG_DONE;
  if (was_open && lg->open_count > 0) lg->open_count--;
  free(lc->head);
  lc->head = NULL;
  upstream_env *e = lg->e;
  if (e->tearing_down) return;
  bool enter = !js_scope_open(e);
  napi_callback_scope scope;
  napi_handle_scope handles;
  if (enter) js_enter(e, &scope, &handles);
  napi_value argv[5];
  napi_create_uint32(e->env, c->id, &argv[0]);
  napi_create_uint32(e->env, lc->failure, &argv[1]);
  napi_create_int32(e->env, lc->detail, &argv[2]);
  napi_get_boolean(e->env, was_open, &argv[3]);
  napi_create_uint32(e->env, lc->peer_code, &argv[4]);
  call_js(lg, lg->on_close, 5, argv);
  if (enter) js_leave(e, scope, handles);
}

static void set_failure(lg_conn *lc, uint8_t reason, int32_t detail) {
  if (lc->failure == LG_R_NONE && lc->state != LG_CLOSING) {
    lc->failure = reason;
    lc->detail = detail;
  }
}

static uint8_t classify(int status) {
  switch (status) {
    case UV_ECONNREFUSED: return LG_R_REFUSED;
    case UV_ECONNRESET:
    case UV_EPIPE: return LG_R_RESET;
    case UV_ETIMEDOUT: return LG_R_TIMEOUT;
    default: return LG_R_ERROR;
  }
}

/* End the connection now: report, then let connection.c close it (after flushing a close frame). */
static void finish(loadgen *lg, conn *c, lg_conn *lc, bool flush) {
  report_close(lg, c, lc);
  conn_finish(c, flush);
}

/* ---- connection.c / addon.c hooks ----------------------------------------------------------------- */

void loadgen_on_open(conn *c, int status) {
  loadgen *lg = c->owner->loadgen;
  lg_conn *lc = lg_of(c);
  if (status < 0) { /* the caller closes the handle */
    set_failure(lc, classify(status), status);
    report_close(lg, c, lc);
    return;
  }
  conn_write_raw(c, (const uint8_t *)lc->head, lc->head_length);
  free(lc->head);
  lc->head = NULL;
  lc->head_length = 0;
  uint64_t elapsed_ms = (uv_hrtime() - lc->started_ns) / 1000000;
  conn_set_deadline(c, lg->timeout_ms > elapsed_ms ? (uint32_t)(lg->timeout_ms - elapsed_ms) : 1);
}

void loadgen_on_close(conn *c, enum close_kind kind, int status) {
  loadgen *lg = c->owner->loadgen;
  lg_conn *lc = lg_of(c);
  if (kind == CLOSE_TIMEOUT) set_failure(lc, LG_R_TIMEOUT, 0);
  else if (kind == CLOSE_EOF) set_failure(lc, LG_R_CLOSED, 0);
  else set_failure(lc, classify(status), status);
  report_close(lg, c, lc); /* the caller finishes the connection */
}

void loadgen_conn_freed(conn *c) { free(lg_of(c)->head); }

/* ---- reading ------------------------------------------------------------------------------------ */

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
      set_failure(lc, LG_R_BAD_RESPONSE, 0);
      finish(lg, c, lc, false);
    }
    return -1;
  }
  if (length < 12 || memcmp(data, "HTTP/1.", 7) != 0 || data[8] != ' ') {
    set_failure(lc, LG_R_BAD_RESPONSE, 0);
    finish(lg, c, lc, false);
    return -1;
  }
  int status = (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
  if (status != 101) {
    set_failure(lc, LG_R_STATUS, status);
    finish(lg, c, lc, false);
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
    set_failure(lc, LG_R_BAD_ACCEPT, 0);
    finish(lg, c, lc, false);
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
  report_open(lg, c, lc);
  return end - data;
}

/* A complete message: count it, record its round trip, and (closed loop) earn one more send. */
static void message(loadgen *lg, conn *c, lg_conn *lc, uint64_t now) {
  lg->raw_received++;
  uint64_t length = lc->message_length;
  if (lc->stamped) {
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
  if (lg->running && lg->scenario == LG_THROUGHPUT) owe(lg, c, lc, 1);
}

/* The peer's close: answer it (unless we started the close) and let TCP finish. */
static void close_frame(loadgen *lg, conn *c, lg_conn *lc, const uint8_t *payload, size_t length) {
  uint16_t code = length >= 2 ? (uint16_t)((payload[0] << 8) | payload[1]) : 1005;
  lc->peer_code = code;
  if (lc->state == LG_OPEN) {
    set_failure(lc, LG_R_CLOSED, 0);
    lc->state = LG_CLOSING;
    if (!(c->flags & F_CLOSE_SENT)) frames_send_close(c, code == 1005 ? 1000 : code, NULL, 0);
  }
  finish(lg, c, lc, true);
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
    set_failure(lc, LG_R_MASKED, 0);
    finish(lg, c, lc, false);
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
    set_failure(lc, LG_R_BAD_RESPONSE, 0);
    finish(lg, c, lc, false);
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
    if (nread == UV_EOF) set_failure(lc, LG_R_CLOSED, 0);
    else set_failure(lc, classify((int)nread), (int)nread);
    finish(lg, c, lc, false);
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
        set_failure(lc, LG_R_ERROR, UV_ENOMEM);
        finish(lg, c, lc, false);
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
          set_failure(lc, LG_R_ERROR, UV_ENOMEM);
          finish(lg, c, lc, false);
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

/* ---- connecting and closing (for loadgen-api.c) ------------------------------------------------- */

int lg_connect(loadgen *lg, const char *host, int port, const char *local, const uint8_t *request, size_t request_length, const char *accept, uint32_t *id) {
  if (strlen(accept) >= sizeof(((lg_conn *)0)->accept)) return UV_EINVAL;
  uint8_t *copy = malloc(request_length);
  if (copy == NULL) return UV_ENOMEM;
  int rc = conn_connect(lg->e, host, port, lg->timeout_ms, local, sizeof(lg_conn), id);
  if (rc < 0) {
    free(copy);
    return rc;
  }
  conn *c = conn_lookup(lg->e, *id);
  c->flags |= F_LOADGEN;
  lg_conn *lc = lg_of(c);
  memcpy(copy, request, request_length);
  lc->head = (char *)copy; /* the request waits here until the connect completes */
  lc->head_length = (uint32_t)request_length;
  strcpy(lc->accept, accept);
  lc->started_ns = uv_hrtime();
  lg->attempted++;
  return 0;
}

/* Start the closing handshake on every open connection (destroying the ones still upgrading), each
 * given `timeout_ms` to finish before it is dropped. */
void lg_close_all(loadgen *lg, uint16_t code, uint32_t timeout_ms) {
  upstream_env *e = lg->e;
  for (uint32_t i = 0; i < e->slot_count; i++) {
    conn *c = e->slots[i];
    if (c == NULL || !(c->flags & F_LOADGEN)) continue;
    lg_conn *lc = lg_of(c);
    if (lc->state == LG_UPGRADING) {
      lc->state = LG_CLOSING;
      finish(lg, c, lc, false);
    } else if (lc->state == LG_OPEN) {
      lc->state = LG_CLOSING;
      frames_send_close(c, code, NULL, 0);
      conn_set_deadline(c, timeout_ms);
    }
  }
}

/* Drop every connection at once (the end of a run); each is reported as closed. */
void lg_destroy_all(loadgen *lg) {
  upstream_env *e = lg->e;
  for (uint32_t i = 0; i < e->slot_count; i++) {
    conn *c = e->slots[i];
    if (c == NULL || !(c->flags & F_LOADGEN)) continue;
    lg_conn *lc = lg_of(c);
    if (lc->state != LG_DONE && lc->state != LG_CLOSING) set_failure(lc, LG_R_CLOSED, 0);
    finish(lg, c, lc, false);
  }
}

/* Measured messages still unanswered on connections that can still answer them. */
bool lg_outstanding(loadgen *lg) {
  if (lg->sent <= lg->received) return false;
  for (uint32_t i = 0; i < lg->held_count; i++) {
    conn *c = conn_lookup(lg->e, lg->held[i]);
    if (c != NULL && lg_of(c)->state == LG_OPEN && lg_of(c)->sent > lg_of(c)->received) return true;
  }
  return false;
}
