/*
 * The load generator's WebSocket client (`npm run loadtest -- --client native`): the connections of
 * connection.c (connect, write batching per loop phase, deadlines, closing) with a client side of its
 * own, so that one thread can drive millions of round trips per second. Per frame it does only C
 * work: a streaming parse (loadgen-read.c), latency into a C histogram, and (closed loop) one new
 * masked frame per reply, framed at the flush. This file sends, ticks, reports and closes. JavaScript
 * hears only of opens and closes; counters and histograms are copied out on request (loadgen-api.c).
 *
 * Send stamps are uv_hrtime() nanoseconds in the first 8 payload bytes (little-endian); replies come
 * back to the same thread, so the clock that stamps is the clock that reads.
 */
#include "loadgen.h"

#include <stdlib.h>
#include <string.h>

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

void lg_owe(loadgen *lg, conn *c, lg_conn *lc, uint32_t n) {
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
      if (c != NULL && lg_of(c)->state == LG_OPEN) lg_owe(lg, c, lg_of(c), lg->in_flight);
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

void lg_report_open(loadgen *lg, conn *c, lg_conn *lc) {
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
void lg_report_close(loadgen *lg, conn *c, lg_conn *lc) {
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

void lg_set_failure(lg_conn *lc, uint8_t reason, int32_t detail) {
  if (lc->failure == LG_R_NONE && lc->state != LG_CLOSING) {
    lc->failure = reason;
    lc->detail = detail;
  }
}

uint8_t lg_classify(int status) {
  switch (status) {
    case UV_ECONNREFUSED: return LG_R_REFUSED;
    case UV_ECONNRESET:
    case UV_EPIPE: return LG_R_RESET;
    case UV_ETIMEDOUT: return LG_R_TIMEOUT;
    default: return LG_R_ERROR;
  }
}

/* End the connection now: report, then let connection.c close it (after flushing a close frame). */
void lg_finish(loadgen *lg, conn *c, lg_conn *lc, bool flush) {
  lg_report_close(lg, c, lc);
  conn_finish(c, flush);
}

/* ---- connection.c / addon.c hooks ----------------------------------------------------------------- */

void loadgen_on_open(conn *c, int status) {
  loadgen *lg = c->owner->loadgen;
  lg_conn *lc = lg_of(c);
  if (status < 0) { /* the caller closes the handle */
    lg_set_failure(lc, lg_classify(status), status);
    lg_report_close(lg, c, lc);
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
  if (kind == CLOSE_TIMEOUT) lg_set_failure(lc, LG_R_TIMEOUT, 0);
  else if (kind == CLOSE_EOF) lg_set_failure(lc, LG_R_CLOSED, 0);
  else lg_set_failure(lc, lg_classify(status), status);
  lg_report_close(lg, c, lc); /* the caller finishes the connection */
}

void loadgen_conn_freed(conn *c) { free(lg_of(c)->head); }

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
      lg_finish(lg, c, lc, false);
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
    if (lc->state != LG_DONE && lc->state != LG_CLOSING) lg_set_failure(lc, LG_R_CLOSED, 0);
    lg_finish(lg, c, lc, false);
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
