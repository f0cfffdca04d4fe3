/*
 * Backend connections on the calling thread's libuv loop: connect with a dial deadline, read into
 * the thread's one static buffer, a write queue flushed once per loop phase, deadlines on one timer,
 * and closing that never leaves a handle behind. Ids and write blocks come from tables.c; the thread's
 * own handles (the flush pair, the timers) are env.c's.
 *
 * Writes are batched: sendMessage only appends to the connection's pending block and marks it
 * dirty; a prepare handle (before the loop blocks in poll) and a check handle (right after poll)
 * flush every dirty connection with uv_try_write, so a connection that receives many client
 * messages in one loop turn costs one syscall. Only what the kernel refuses goes through uv_write
 * (one write in flight per connection; later frames wait in the next pending block).
 */
#include "upstream.h"

#include <stdlib.h>
#include <string.h>

static void set_state(conn *c, enum conn_state state) {
  upstream_env *e = c->owner;
  if (c->state == CONN_CONNECTING) e->stats.connecting--;
  if (c->state == CONN_FRAMING) e->stats.framing--;
  c->state = (uint8_t)state;
  if (state == CONN_FRAMING) e->stats.framing++;
}

/* ---- closing ----------------------------------------------------------------------------- */

static void deadline_remove(conn *c) {
  if (!c->in_deadline_list) return;
  if (c->deadline_prev != NULL) c->deadline_prev->deadline_next = c->deadline_next;
  else c->owner->deadlines = c->deadline_next;
  if (c->deadline_next != NULL) c->deadline_next->deadline_prev = c->deadline_prev;
  c->deadline_prev = c->deadline_next = NULL;
  c->in_deadline_list = 0;
}

static void on_conn_closed(uv_handle_t *handle) {
  conn *c = (conn *)handle;
  upstream_env *e = c->owner;
  if (c->flags & F_DIRTY) {
    for (conn **at = &e->dirty; *at != NULL; at = &(*at)->next_dirty) {
      if (*at == c) {
        *at = c->next_dirty;
        break;
      }
    }
  }
  free(c->partial);
  block_release(e, c->pending, c->pending_capacity);
  if (c->flags & F_LOADGEN) loadgen_conn_freed(c);
  free(c);
  env_handle_closed(e);
}

static void close_handle(conn *c) {
  if (c->flags & F_HANDLE_CLOSING) return;
  c->flags |= F_HANDLE_CLOSING;
  deadline_remove(c);
  if (c->state != CONN_CLOSED) set_state(c, CONN_CLOSED);
  slot_release(c);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* The connection is over for JavaScript (reported, or destroyed): free its id at once; with
 * `flush_first`, send what is queued (a close frame) before closing, for at most LINGER_MS. */
void conn_finish(conn *c, bool flush_first) {
  if (c->flags & F_HANDLE_CLOSING) return;
  if (c->state != CONN_CLOSED) set_state(c, CONN_CLOSED);
  slot_release(c);
  if (flush_first && !c->owner->tearing_down && (c->pending_length > 0 || c->in_flight != NULL)) {
    c->flags |= F_CLOSE_AFTER_FLUSH;
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn_set_deadline(c, LINGER_MS);
    if (c->pending_length > 0) conn_mark_dirty(c);
    return;
  }
  close_handle(c);
}

void conn_destroy(conn *c) { conn_finish(c, false); }

static void fail_socket(conn *c, int status) {
  if (c->state == CONN_CLOSED) {
    close_handle(c);
    return;
  }
  /* Flushes run without a JavaScript scope (most never call back): open one only to report. */
  upstream_env *e = c->owner;
  bool enter = !js_scope_open(e);
  napi_callback_scope scope;
  napi_handle_scope handles;
  if (enter) js_enter(e, &scope, &handles);
  js_on_close(c, 1006, NULL, 0, CLOSE_ERROR, status);
  if (enter) js_leave(e, scope, handles);
  conn_finish(c, false);
}

/* ---- writing ----------------------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status);

static void conn_flush(conn *c) {
  if (c->in_flight != NULL || c->pending_length == 0 || (c->flags & F_HANDLE_CLOSING)) return;
  /* Still connecting: libuv would queue the bytes as a write request (one malloc) and keep POLLOUT
   * watched after the connect for it, one more epoll_ctl and one more wake-up per connection.
   * on_connect flushes them instead, in the same loop turn. */
  if (c->state == CONN_CONNECTING) return;
  upstream_env *e = c->owner;
  uv_buf_t buf = uv_buf_init((char *)c->pending, c->pending_length);
  int written = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
  if (written == UV_EAGAIN) written = 0;
  if (written < 0) {
    fail_socket(c, written);
    return;
  }
  e->stats.bytes_out += (uint64_t)written;
  if ((uint32_t)written == c->pending_length) {
    c->pending_length = 0;
    /* keep a pooled block for the next turn only while the pool has room; idle connections hold none */
    block_release(e, c->pending, c->pending_capacity);
    c->pending = NULL;
    c->pending_capacity = 0;
    if (c->flags & F_CLOSE_AFTER_FLUSH) close_handle(c);
    return;
  }
  write_req *w = malloc(sizeof *w);
  if (w == NULL) {
    fail_socket(c, UV_ENOMEM);
    return;
  }
  w->block = c->pending;
  w->capacity = c->pending_capacity;
  w->length = c->pending_length - (uint32_t)written;
  c->pending = NULL;
  c->pending_length = 0;
  c->pending_capacity = 0;
  buf = uv_buf_init((char *)w->block + written, w->length);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (rc < 0) {
    block_release(e, w->block, w->capacity);
    free(w);
    fail_socket(c, rc);
    return;
  }
  c->in_flight = w;
  e->stats.queued_writes++;
}

static void on_write(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  conn *c = (conn *)req->handle;
  upstream_env *e = c->owner;
  if (status >= 0) e->stats.bytes_out += w->length;
  block_release(e, w->block, w->capacity);
  free(w);
  c->in_flight = NULL;
  if (status == UV_ECANCELED || (c->flags & F_HANDLE_CLOSING)) return;
  if (status < 0) {
    napi_callback_scope scope;
    napi_handle_scope handles;
    js_enter(e, &scope, &handles);
    fail_socket(c, status);
    js_leave(e, scope, handles);
    return;
  }
  if (c->pending_length > 0) {
    conn_flush(c);
    return;
  }
  if (c->flags & F_CLOSE_AFTER_FLUSH) {
    close_handle(c);
    return;
  }
  if (c->state != CONN_CLOSED) {
    napi_callback_scope scope;
    napi_handle_scope handles;
    js_enter(e, &scope, &handles);
    js_on_drain(c);
    js_leave(e, scope, handles);
  }
}

static void flush_dirty(upstream_env *e) {
  /* The load generator frames what it owes its connections now, stamped as late as possible. */
  if (e->loadgen != NULL) loadgen_before_flush(e);
  while (e->dirty != NULL) {
    conn *list = e->dirty;
    e->dirty = NULL;
    while (list != NULL) {
      conn *c = list;
      list = c->next_dirty;
      c->next_dirty = NULL;
      c->flags &= ~F_DIRTY;
      conn_flush(c);
    }
  }
  if (e->flush_started) {
    e->flush_started = false;
    uv_prepare_stop(&e->flush_before_poll);
    uv_check_stop(&e->flush_after_poll);
  }
}

static void on_flush_before_poll(uv_prepare_t *handle) { flush_dirty(handle->data); }

static void on_flush_after_poll(uv_check_t *handle) { flush_dirty(handle->data); }

void conn_mark_dirty(conn *c) {
  if (c->flags & (F_DIRTY | F_HANDLE_CLOSING)) return;
  upstream_env *e = c->owner;
  c->flags |= F_DIRTY;
  c->next_dirty = e->dirty;
  e->dirty = c;
  if (!e->flush_started && !e->tearing_down) {
    e->flush_started = true;
    uv_prepare_start(&e->flush_before_poll, on_flush_before_poll);
    uv_check_start(&e->flush_after_poll, on_flush_after_poll);
  }
}

/* Room for `length` more bytes at the end of the pending block (NULL when out of memory). */
uint8_t *conn_reserve(conn *c, size_t length) {
  upstream_env *e = c->owner;
  size_t needed = (size_t)c->pending_length + length;
  if (needed > UINT32_MAX) return NULL;
  if (c->pending == NULL) {
    c->pending = block_get(e, needed, &c->pending_capacity);
    if (c->pending == NULL) return NULL;
  } else if (needed > c->pending_capacity) {
    uint32_t capacity;
    uint8_t *grown;
    if (needed <= LARGE_BLOCK_SIZE) {
      grown = block_get(e, needed, &capacity);
    } else {
      size_t size = (size_t)c->pending_capacity * 2;
      if (size < needed) size = needed;
      if (size > UINT32_MAX) size = UINT32_MAX;
      capacity = (uint32_t)size;
      grown = malloc(size);
    }
    if (grown == NULL) return NULL;
    memcpy(grown, c->pending, c->pending_length);
    block_release(e, c->pending, c->pending_capacity);
    c->pending = grown;
    c->pending_capacity = capacity;
  }
  uint8_t *at = c->pending + c->pending_length;
  c->pending_length = (uint32_t)needed;
  return at;
}

void conn_write_raw(conn *c, const uint8_t *data, size_t length) {
  uint8_t *at = conn_reserve(c, length);
  if (at == NULL) return;
  memcpy(at, data, length);
  conn_mark_dirty(c);
}

uint64_t conn_queued_bytes(const conn *c) {
  return (uint64_t)c->pending_length + (c->in_flight != NULL ? c->in_flight->length : 0);
}

/* ---- reading ----------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  conn *c = (conn *)handle;
  upstream_env *e = c->owner;
  if (c->partial != NULL && c->partial_sized && c->partial_need - c->partial_length >= DIRECT_READ_MIN) {
    /* The rest of a large frame goes straight where it will be delivered from: no second copy. */
    *buf = uv_buf_init((char *)c->partial + c->partial_length, c->partial_need - c->partial_length);
    return;
  }
  *buf = uv_buf_init((char *)e->read_buffer, c->state == CONN_FRAMING ? FRAME_READ_SIZE : READ_BUFFER_SIZE);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn *c = (conn *)stream;
  upstream_env *e = c->owner;
  if (nread == 0 || (c->flags & F_HANDLE_CLOSING)) return;
  if (c->flags & F_LOADGEN) { /* no JavaScript scope per read: it opens one only for an event */
    loadgen_on_read(c, nread, buf);
    return;
  }
  napi_callback_scope scope;
  napi_handle_scope handles;
  js_enter(e, &scope, &handles);
  if (nread < 0) {
    if (c->state == CONN_CLOSED) close_handle(c);
    else if (nread == UV_EOF) {
      js_on_close(c, 1006, NULL, 0, CLOSE_EOF, 0);
      conn_finish(c, false);
    } else fail_socket(c, (int)nread);
  } else if (c->state == CONN_CLOSED) {
    /* lingering: what the backend still sends is dropped */
  } else if ((uint8_t *)buf->base != e->read_buffer) {
    /* The rest of a large frame went straight into its reassembly block. */
    e->stats.bytes_in += (uint64_t)nread;
    c->flags |= F_HEARD;
    c->partial_length += (uint32_t)nread;
    e->stats.direct_reads++;
    size_t offset = 0;
    if (c->state == CONN_FRAMING) frames_parse_partial(c, NULL, &offset, 0);
  } else if (c->state == CONN_FRAMING) {
    /* Every data frame of the read goes to JavaScript in one onFrames call (batch_add / batch_flush), so
     * that it can hand them all to uWS inside one cork. */
    e->stats.bytes_in += (uint64_t)nread;
    c->flags |= F_HEARD;
    source src = {SOURCE_READ_BUFFER, e->read_buffer, READ_BUFFER_SIZE, NULL, false};
    size_t offset = 0;
    if (c->partial == NULL || frames_parse_partial(c, &src, &offset, (size_t)nread)) frames_parse(c, &src, offset, (size_t)nread);
    batch_flush(e);
  } else {
    e->stats.bytes_in += (uint64_t)nread;
    if (c->state == CONN_RAW) js_on_raw(c, (size_t)nread);
  }
  js_leave(e, scope, handles);
}

/* A connection reads from the start of its connect (see conn_connect) until it is paused or closes. */
static bool conn_reads(const conn *c) { return c->state == CONN_CONNECTING || c->state == CONN_RAW || c->state == CONN_FRAMING; }

void conn_pause(conn *c) {
  if (c->flags & F_PAUSED) return;
  c->flags |= F_PAUSED;
  if (conn_reads(c)) uv_read_stop((uv_stream_t *)&c->tcp);
}

void conn_resume(conn *c) {
  if (!(c->flags & F_PAUSED)) return;
  c->flags &= ~F_PAUSED;
  if (conn_reads(c)) uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- connecting and deadlines ------------------------------------------------------------ */

static void on_deadline(uv_timer_t *timer);

static void arm_deadline_timer(upstream_env *e) {
  uint64_t due = UINT64_MAX;
  for (conn *c = e->deadlines; c != NULL; c = c->deadline_next) {
    if (c->deadline < due) due = c->deadline;
  }
  if (due == UINT64_MAX) {
    uv_timer_stop(&e->deadline_timer);
    e->timer_due = 0;
    return;
  }
  uint64_t now = uv_now(e->loop);
  e->timer_due = due;
  uv_timer_start(&e->deadline_timer, on_deadline, due > now ? due - now : 0, 0);
}

void conn_set_deadline(conn *c, uint32_t ms) {
  upstream_env *e = c->owner;
  deadline_remove(c);
  if (ms == 0) return;
  c->deadline = uv_now(e->loop) + ms;
  c->deadline_next = e->deadlines;
  c->deadline_prev = NULL;
  if (e->deadlines != NULL) e->deadlines->deadline_prev = c;
  e->deadlines = c;
  c->in_deadline_list = 1;
  if (e->timer_due == 0 || c->deadline < e->timer_due) {
    e->timer_due = c->deadline;
    uv_timer_start(&e->deadline_timer, on_deadline, ms, 0);
  }
}

/* Scans only connections that have a deadline (dials, handshakes, closings): the list is short. */
static void on_deadline(uv_timer_t *timer) {
  upstream_env *e = timer->data;
  uint64_t now = uv_now(e->loop);
  conn *expired = NULL;
  for (conn *c = e->deadlines, *next; c != NULL; c = next) {
    next = c->deadline_next;
    if (c->deadline <= now) {
      deadline_remove(c);
      c->deadline_next = expired;
      expired = c;
    }
  }
  napi_callback_scope scope;
  napi_handle_scope handles;
  js_enter(e, &scope, &handles);
  for (conn *c = expired, *next; c != NULL; c = next) {
    next = c->deadline_next;
    c->deadline_next = NULL;
    if (c->flags & F_HANDLE_CLOSING) continue;
    if (c->state == CONN_CONNECTING) {
      js_on_open(c, UV_ETIMEDOUT);
      close_handle(c);
    } else if (c->state == CONN_CLOSED) {
      close_handle(c); /* a linger ran out */
    } else {
      js_on_close(c, 1006, NULL, 0, CLOSE_TIMEOUT, UV_ETIMEDOUT);
      conn_finish(c, false);
    }
  }
  js_leave(e, scope, handles);
  arm_deadline_timer(e);
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  upstream_env *e = c->owner;
  free(req);
  c->connect_req = NULL;
  if (status == UV_ECANCELED || (c->flags & F_HANDLE_CLOSING) || c->state != CONN_CONNECTING) return;
  deadline_remove(c);
  napi_callback_scope scope;
  napi_handle_scope handles;
  js_enter(e, &scope, &handles);
  if (status < 0) {
    js_on_open(c, status);
    close_handle(c);
  } else {
    set_state(c, CONN_RAW);
    /* What was written while connecting (an upgrade request, an HTTP request head) goes out in this
     * loop turn's check phase, with anything onOpen adds. */
    if (c->pending_length > 0) conn_mark_dirty(c);
    js_on_open(c, 0);
  }
  js_leave(e, scope, handles);
}

static int parse_address(const char *host, int port, struct sockaddr_storage *addr) {
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) == 0) return 0;
  return UV_EINVAL;
}

int conn_connect(upstream_env *e, const char *host, int port, uint32_t dial_timeout_ms, const char *local_address, size_t extra, uint32_t *id_out) {
  struct sockaddr_storage remote, local;
  if (port <= 0 || port > 65535 || parse_address(host, port, &remote) != 0) return UV_EINVAL;
  if (local_address != NULL && parse_address(local_address, 0, &local) != 0) return UV_EINVAL;
  conn *c = calloc(1, sizeof *c + extra);
  if (c == NULL) return UV_ENOMEM;
  c->owner = e;
  c->state = CONN_CONNECTING;
  int rc = uv_tcp_init(e->loop, &c->tcp);
  if (rc < 0) {
    free(c);
    return rc;
  }
  e->open_handles++;
  c->flags |= F_HANDLE_CLOSING; /* until the connect is under way, a failure just closes */
  uv_tcp_nodelay(&c->tcp, 1);
  if (local_address != NULL) rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&local, 0);
  if (rc == 0) {
    c->connect_req = malloc(sizeof *c->connect_req);
    if (c->connect_req == NULL) rc = UV_ENOMEM;
  }
  if (rc == 0) {
    c->connect_req->data = c;
    rc = uv_tcp_connect(c->connect_req, &c->tcp, (const struct sockaddr *)&remote, on_connect);
    if (rc < 0) {
      free(c->connect_req);
      c->connect_req = NULL;
    }
  }
  /* Reading starts with the connect: libuv reports the connect before any read, and the socket is then
   * registered once for both (POLLIN|POLLOUT, then POLLIN once connected) instead of three times. */
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc == 0 && !slot_claim(e, c)) rc = UV_ENOMEM;
  if (rc < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    return rc;
  }
  c->flags &= ~F_HANDLE_CLOSING;
  e->stats.connecting++;
  if (dial_timeout_ms > 0) conn_set_deadline(c, dial_timeout_ms);
  *id_out = c->id;
  return 0;
}

/* ---- teardown ---------------------------------------------------------------------------- */

/* Environment teardown (thread exit): close every handle without calling JavaScript. */
void env_close_all(upstream_env *e) {
  e->tearing_down = true;
  for (uint32_t i = 0; i < e->slot_count; i++) {
    if (e->slots[i] != NULL) close_handle(e->slots[i]);
  }
  while (e->deadlines != NULL) { /* lingering closes */
    conn *c = e->deadlines;
    deadline_remove(c);
    close_handle(c);
  }
  for (conn *c = e->dirty; c != NULL; c = c->next_dirty) close_handle(c);
  if (e->loadgen != NULL) loadgen_teardown(e);
  env_close_handle(e, (uv_handle_t *)&e->flush_before_poll);
  env_close_handle(e, (uv_handle_t *)&e->flush_after_poll);
  env_close_handle(e, (uv_handle_t *)&e->deadline_timer);
  env_close_handle(e, (uv_handle_t *)&e->liveness_timer);
}
