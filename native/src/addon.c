/*
 * The JavaScript face of the native upstream leg: per-environment state (so each worker thread has
 * its own loop, read buffer and connections), the exported functions, and the calls back into
 * JavaScript. Callbacks from the loop run inside one callback scope per libuv event, so promise
 * jobs and nextTicks queued by them run as they would after a Node socket's event.
 */
#include "upstream.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                   \
  do {                                                                                \
    if ((call) != napi_ok) {                                                          \
      napi_throw_error(env, "ERR_SLUICE_NATIVE", "sluice native upstream: " #call " failed"); \
      return NULL;                                                                    \
    }                                                                                 \
  } while (0)

/* Set while a loop callback's scope is open (js_enter), so that a nested report opens no second one, and a
 * throw from JavaScript there becomes an uncaught exception. Thread-local: each worker runs its own loop. */
static _Thread_local upstream_env *scope_owner;
static _Thread_local bool in_loop_callback;

/* ---- calling JavaScript -------------------------------------------------------------------- */

void js_enter(upstream_env *e, napi_callback_scope *scope, napi_handle_scope *handles) {
  *scope = NULL;
  *handles = NULL;
  if (!(e->initialized || e->loadgen != NULL) || e->tearing_down) return;
  napi_open_handle_scope(e->env, handles);
  napi_value resource;
  napi_get_reference_value(e->env, e->resource, &resource);
  napi_open_callback_scope(e->env, resource, e->async_context, scope);
  scope_owner = e;
  in_loop_callback = true;
}

void js_leave(upstream_env *e, napi_callback_scope scope, napi_handle_scope handles) {
  scope_owner = NULL;
  in_loop_callback = false;
  if (scope != NULL) napi_close_callback_scope(e->env, scope);
  if (handles != NULL) napi_close_handle_scope(e->env, handles);
}

static bool can_call(upstream_env *e) { return e->initialized && !e->tearing_down; }

/* True inside a loop callback that opened its scope (js_enter). A nested js_enter would also be
 * safe (inside a call from JavaScript, say), only slower. */
bool js_scope_open(upstream_env *e) { return scope_owner == e; }

/* A callback that throws from a loop event is an uncaught exception, as for any Node event. */
static void call(upstream_env *e, napi_value fn, size_t argc, napi_value *argv) {
  napi_value undefined;
  napi_get_undefined(e->env, &undefined);
  napi_status status = napi_call_function(e->env, undefined, fn, argc, argv, NULL);
  if (status == napi_pending_exception && in_loop_callback) {
    napi_value error;
    napi_get_and_clear_last_exception(e->env, &error);
    napi_fatal_exception(e->env, error);
  }
}

static napi_value callback(upstream_env *e, napi_ref ref) {
  napi_value fn = NULL;
  if (ref != NULL) napi_get_reference_value(e->env, ref, &fn);
  return fn;
}

static void free_block(napi_env env, void *data, void *hint) { free(data); }

void js_on_open(conn *c, int status) {
  upstream_env *e = c->owner;
  if (c->flags & F_LOADGEN) {
    loadgen_on_open(c, status);
    return;
  }
  if (!can_call(e)) return;
  napi_value argv[2];
  napi_create_uint32(e->env, c->id, &argv[0]);
  napi_create_int32(e->env, status, &argv[1]);
  call(e, callback(e, e->on_open), 2, argv);
}

/* The HTTP answer's bytes are at the start of the read buffer, which JavaScript has a view of. */
void js_on_raw(conn *c, size_t length) {
  upstream_env *e = c->owner;
  if (!can_call(e)) return;
  napi_value argv[2];
  napi_create_uint32(e->env, c->id, &argv[0]);
  napi_create_uint32(e->env, (uint32_t)length, &argv[1]);
  call(e, callback(e, e->on_raw), 2, argv);
}

/* One data frame of the read being parsed joins the batch for onFrames: three numbers in the table, no
 * JavaScript value. A frame of another connection or of a second reassembly block flushes first. */
void batch_add(conn *c, source *src, uint8_t opcode, bool fin, size_t start, size_t length) {
  upstream_env *e = c->owner;
  bool in_block = src->kind == SOURCE_HEAP;
  if (e->batch_count > 0 && (e->batch_conn != c || e->batch_count == FRAME_TABLE_FRAMES || (in_block && e->batch_block != NULL && e->batch_block != src))) {
    batch_flush(e);
    if (c->state != CONN_FRAMING) return; /* JavaScript let go of it while taking the earlier frames */
  }
  uint32_t *entry = e->frame_table + 3 * e->batch_count++;
  entry[0] = opcode | (fin ? FRAME_FIN : 0) | (in_block ? FRAME_IN_BLOCK : 0);
  entry[1] = (uint32_t)start;
  entry[2] = (uint32_t)length;
  e->batch_conn = c;
  if (in_block) e->batch_block = src;
}

/* Hand the batch to JavaScript: onFrames(id, count, block). The read buffer's frames are read through the
 * view init() returned; a reassembly block is wrapped once in an ArrayBuffer that frees it when collected. */
void batch_flush(upstream_env *e) {
  uint32_t count = e->batch_count;
  conn *c = e->batch_conn;
  source *block = e->batch_block;
  e->batch_count = 0;
  e->batch_conn = NULL;
  e->batch_block = NULL;
  if (count == 0 || c == NULL || c->state != CONN_FRAMING || !can_call(e)) return;
  napi_value argv[3];
  napi_create_uint32(e->env, c->id, &argv[0]);
  napi_create_uint32(e->env, count, &argv[1]);
  if (block == NULL) {
    napi_get_undefined(e->env, &argv[2]);
  } else {
    if (block->array_buffer == NULL) {
      if (napi_create_external_arraybuffer(e->env, block->base, block->capacity, free_block, NULL, &block->array_buffer) == napi_ok) {
        block->handed_over = true;
      } else {
        /* no external buffers in this runtime (V8 sandbox): copy instead; the block stays ours */
        void *data;
        napi_create_arraybuffer(e->env, block->capacity, &data, &block->array_buffer);
        memcpy(data, block->base, block->capacity);
      }
    }
    argv[2] = block->array_buffer;
  }
  e->stats.frame_calls++;
  call(e, callback(e, e->on_frames), 3, argv);
}

void js_on_close(conn *c, uint16_t code, const uint8_t *reason, size_t reason_length, enum close_kind kind, int status) {
  upstream_env *e = c->owner;
  if (c->flags & F_LOADGEN) {
    if (c->state != CONN_CLOSED) loadgen_on_close(c, kind, status);
    return;
  }
  /* The frames that came before the close go first. */
  if (e->batch_conn == c) batch_flush(e);
  if (c->state == CONN_CLOSED || !can_call(e)) return;
  napi_value argv[5];
  void *copy;
  napi_create_uint32(e->env, c->id, &argv[0]);
  napi_create_uint32(e->env, code, &argv[1]);
  napi_create_buffer_copy(e->env, reason_length, reason != NULL ? reason : (const uint8_t *)"", &copy, &argv[2]);
  napi_create_uint32(e->env, kind, &argv[3]);
  napi_create_int32(e->env, status, &argv[4]);
  call(e, callback(e, e->on_close), 5, argv);
}

void js_on_drain(conn *c) {
  upstream_env *e = c->owner;
  if ((c->flags & F_LOADGEN) || !can_call(e) || e->on_drain == NULL) return;
  napi_value argv[1];
  napi_create_uint32(e->env, c->id, &argv[0]);
  call(e, callback(e, e->on_drain), 1, argv);
}

/* ---- argument helpers ---------------------------------------------------------------------- */

static upstream_env *env_state(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

static napi_value number(napi_env env, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  return v;
}

static napi_value boolean(napi_env env, bool value) {
  napi_value v;
  napi_get_boolean(env, value, &v);
  return v;
}

/* Bytes of an ArrayBuffer, a TypedArray (Buffer included) or a DataView. */
static bool bytes_of(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is;
  /* ArrayBuffer first: that is what uWS hands every client message as. */
  if (napi_is_arraybuffer(env, value, &is) == napi_ok && is) {
    void *base;
    if (napi_get_arraybuffer_info(env, value, &base, length) != napi_ok) return false;
    *data = base;
    return true;
  }
  if (napi_is_typedarray(env, value, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t count, offset;
    napi_value ab;
    void *base;
    if (napi_get_typedarray_info(env, value, &type, &count, &base, &ab, &offset) != napi_ok) return false;
    size_t element = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: element = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: element = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: element = 8; break;
      default: element = 1;
    }
    *data = base;
    *length = count * element;
    return true;
  }
  if (napi_is_dataview(env, value, &is) == napi_ok && is) {
    void *base;
    napi_value ab;
    size_t offset;
    if (napi_get_dataview_info(env, value, length, &base, &ab, &offset) != napi_ok) return false;
    *data = base;
    return true;
  }
  return false;
}

#define ARGS(n)                                                   \
  size_t argc = n;                                                \
  napi_value argv[n];                                             \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));    \
  upstream_env *e = env_state(env);

static conn *conn_arg(napi_env env, upstream_env *e, napi_value value) {
  uint32_t id = 0;
  if (napi_get_value_uint32(env, value, &id) != napi_ok) return NULL;
  return conn_lookup(e, id);
}

static uint32_t uint_arg(napi_env env, napi_value value, uint32_t fallback) {
  uint32_t v;
  return napi_get_value_uint32(env, value, &v) == napi_ok ? v : fallback;
}

/* ---- exported functions -------------------------------------------------------------------- */

static napi_status set_ref(napi_env env, napi_value callbacks, const char *name, napi_ref *ref, bool required) {
  napi_value fn;
  napi_valuetype type;
  napi_status s = napi_get_named_property(env, callbacks, name, &fn);
  if (s != napi_ok) return s;
  napi_typeof(env, fn, &type);
  if (type != napi_function) {
    if (required) return napi_function_expected;
    fn = NULL;
  }
  if (*ref != NULL) napi_delete_reference(env, *ref);
  *ref = NULL;
  return fn != NULL ? napi_create_reference(env, fn, 1, ref) : napi_ok;
}

/* init(callbacks) -> { readBuffer, frames }: the views onRaw and onFrames refer to, made once per thread. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  ARGS(1);
  if (argc < 1 || set_ref(env, argv[0], "onOpen", &e->on_open, true) != napi_ok || set_ref(env, argv[0], "onRaw", &e->on_raw, true) != napi_ok ||
      set_ref(env, argv[0], "onFrames", &e->on_frames, true) != napi_ok || set_ref(env, argv[0], "onClose", &e->on_close, true) != napi_ok ||
      set_ref(env, argv[0], "onDrain", &e->on_drain, false) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "init(callbacks): onOpen, onRaw, onFrames and onClose must be functions");
    return NULL;
  }
  e->initialized = true;
  napi_value views, read_view, frames;
  CHECK(napi_create_object(env, &views));
  CHECK(napi_get_reference_value(env, e->read_view, &read_view));
  CHECK(napi_get_reference_value(env, e->frame_table_ref, &frames));
  CHECK(napi_set_named_property(env, views, "readBuffer", read_view));
  CHECK(napi_set_named_property(env, views, "frames", frames));
  return views;
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  ARGS(4);
  if (!e->initialized) {
    napi_throw_error(env, "ERR_SLUICE_NATIVE_INIT", "connect(): call init(callbacks) first on this thread");
    return NULL;
  }
  char host[64], local[64];
  size_t length;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], host, sizeof host, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "connect(host, port, dialTimeoutMs, localAddress?): host must be an IP literal string");
    return NULL;
  }
  int32_t port = 0;
  napi_get_value_int32(env, argv[1], &port);
  uint32_t dial = argc > 2 ? uint_arg(env, argv[2], 0) : 0;
  const char *local_address = NULL;
  if (argc > 3 && napi_get_value_string_utf8(env, argv[3], local, sizeof local, &length) == napi_ok) local_address = local;
  uint32_t id = 0;
  int rc = conn_connect(e, host, port, dial, local_address, 0, &id);
  return number(env, rc < 0 ? rc : (double)id);
}

/* writeRaw(id, bytes | latin1 string): a string (the upgrade request) is written straight into the
 * connection's write block, with no Buffer made for it. */
static napi_value js_write_raw(napi_env env, napi_callback_info info) {
  ARGS(2);
  conn *c = argc >= 2 ? conn_arg(env, e, argv[0]) : NULL;
  uint8_t *data;
  size_t length;
  if (c == NULL || (c->state != CONN_RAW && c->state != CONN_CONNECTING)) return number(env, -1);
  napi_valuetype type;
  napi_typeof(env, argv[1], &type);
  if (type == napi_string) {
    if (napi_get_value_string_latin1(env, argv[1], NULL, 0, &length) != napi_ok) return number(env, -1);
    uint8_t *at = conn_reserve(c, length + 1); /* napi writes a terminating NUL */
    if (at == NULL) return number(env, -1);
    size_t copied = 0;
    napi_get_value_string_latin1(env, argv[1], (char *)at, length + 1, &copied);
    c->pending_length -= (uint32_t)(length + 1 - copied);
    conn_mark_dirty(c);
    return number(env, (double)conn_queued_bytes(c));
  }
  if (!bytes_of(env, argv[1], &data, &length)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "writeRaw(id, bytes): bytes must be a string, an ArrayBuffer or a view");
    return NULL;
  }
  conn_write_raw(c, data, length);
  return number(env, (double)conn_queued_bytes(c));
}

/* startFraming(id, maxMessageSize, pingIntervalMs?, pongTimeoutMs?, early?) */
static napi_value js_start_framing(napi_env env, napi_callback_info info) {
  ARGS(5);
  conn *c = argc >= 1 ? conn_arg(env, e, argv[0]) : NULL;
  if (c == NULL || c->state != CONN_RAW) return boolean(env, false);
  /* No fallback: the limit is websocket.maxMessageSize, whose default lives in the config schema. */
  uint32_t max_message = 0;
  if (argc < 2 || napi_get_value_uint32(env, argv[1], &max_message) != napi_ok || max_message == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "startFraming(id, maxMessageSize): maxMessageSize must be a positive integer");
    return NULL;
  }
  c->max_message = max_message;
  c->state = CONN_FRAMING;
  e->stats.framing++;
  uint32_t ping_interval = argc >= 3 ? uint_arg(env, argv[2], 0) : 0;
  uint32_t pong_timeout = argc >= 4 ? uint_arg(env, argv[3], 0) : 0;
  if (ping_interval > 0 && pong_timeout > 0) conn_watch_liveness(c, ping_interval, pong_timeout);
  uint8_t *early;
  size_t length;
  if (argc >= 5 && bytes_of(env, argv[4], &early, &length) && length > 0) {
    /* Frames that came in the same read as the 101: parse a private copy (the caller's view may be
     * on the read buffer), delivering before this call returns. */
    uint8_t *copy = malloc(length);
    if (copy == NULL) {
      napi_throw_error(env, "ERR_SLUICE_NATIVE", "startFraming(): out of memory");
      return NULL;
    }
    memcpy(copy, early, length);
    source heap = {SOURCE_HEAP, copy, length, NULL, false};
    upstream_env *saved_owner = scope_owner;
    bool saved_loop = in_loop_callback;
    scope_owner = NULL;
    in_loop_callback = false;
    frames_parse(c, &heap, 0, length);
    batch_flush(e); /* before the block may be freed */
    scope_owner = saved_owner;
    in_loop_callback = saved_loop;
    if (!heap.handed_over) free(copy);
  }
  return boolean(env, true);
}

static napi_value js_send_message(napi_env env, napi_callback_info info) {
  ARGS(3);
  conn *c = argc >= 3 ? conn_arg(env, e, argv[0]) : NULL;
  if (c == NULL || c->state != CONN_FRAMING || (c->flags & F_CLOSE_SENT)) return number(env, -1);
  uint32_t opcode = uint_arg(env, argv[1], 0);
  uint8_t *data;
  size_t length;
  if (!bytes_of(env, argv[2], &data, &length) || !(opcode == 1 || opcode == 2 || ((opcode == 9 || opcode == 10) && length <= 125))) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "sendMessage(id, opcode, bytes): opcode must be 1, 2, 9 or 10 and bytes an ArrayBuffer or a view");
    return NULL;
  }
  frames_send(c, (uint8_t)opcode, data, length);
  e->stats.messages_out++;
  /* an int32 is a small integer to V8: no heap number per message */
  uint64_t queued = conn_queued_bytes(c);
  napi_value result;
  napi_create_int32(env, queued > INT32_MAX ? INT32_MAX : (int32_t)queued, &result);
  return result;
}

static napi_value js_send_close(napi_env env, napi_callback_info info) {
  ARGS(3);
  conn *c = argc >= 1 ? conn_arg(env, e, argv[0]) : NULL;
  if (c == NULL || c->state != CONN_FRAMING || (c->flags & F_CLOSE_SENT)) return boolean(env, false);
  uint32_t code = argc >= 2 ? uint_arg(env, argv[1], 0) : 0;
  uint8_t *reason = NULL;
  size_t reason_length = 0;
  char text[124];
  if (argc >= 3) {
    napi_valuetype type;
    napi_typeof(env, argv[2], &type);
    if (type == napi_string) {
      napi_get_value_string_utf8(env, argv[2], text, sizeof text, &reason_length);
      reason = (uint8_t *)text;
    } else if (type == napi_object) {
      bytes_of(env, argv[2], &reason, &reason_length);
    }
  }
  if (code != 0 && (code < 1000 || code > 4999)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "sendClose(id, code, reason): code must be 0 (none) or 1000-4999");
    return NULL;
  }
  frames_send_close(c, (uint16_t)code, reason, reason_length);
  return boolean(env, true);
}

static napi_value js_pause(napi_env env, napi_callback_info info) {
  ARGS(1);
  conn *c = argc >= 1 ? conn_arg(env, e, argv[0]) : NULL;
  if (c != NULL) conn_pause(c);
  return boolean(env, c != NULL);
}

static napi_value js_resume(napi_env env, napi_callback_info info) {
  ARGS(1);
  conn *c = argc >= 1 ? conn_arg(env, e, argv[0]) : NULL;
  if (c != NULL) conn_resume(c);
  return boolean(env, c != NULL);
}

static napi_value js_set_deadline(napi_env env, napi_callback_info info) {
  ARGS(2);
  conn *c = argc >= 1 ? conn_arg(env, e, argv[0]) : NULL;
  if (c != NULL) conn_set_deadline(c, argc >= 2 ? uint_arg(env, argv[1], 0) : 0);
  return boolean(env, c != NULL);
}

static napi_value js_destroy(napi_env env, napi_callback_info info) {
  ARGS(1);
  conn *c = argc >= 1 ? conn_arg(env, e, argv[0]) : NULL;
  if (c != NULL) conn_destroy(c);
  return boolean(env, c != NULL);
}

static napi_value js_queued(napi_env env, napi_callback_info info) {
  ARGS(1);
  conn *c = argc >= 1 ? conn_arg(env, e, argv[0]) : NULL;
  return number(env, c != NULL ? (double)conn_queued_bytes(c) : -1);
}

static void put(napi_env env, napi_value object, const char *name, double value) {
  napi_set_named_property(env, object, name, number(env, value));
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  ARGS(1);
  napi_value o;
  CHECK(napi_create_object(env, &o));
  put(env, o, "connections", (double)e->stats.connections);
  put(env, o, "connecting", (double)e->stats.connecting);
  put(env, o, "framing", (double)e->stats.framing);
  put(env, o, "openHandles", e->open_handles);
  put(env, o, "messagesIn", (double)e->stats.messages_in);
  put(env, o, "messagesOut", (double)e->stats.messages_out);
  put(env, o, "bytesIn", (double)e->stats.bytes_in);
  put(env, o, "bytesOut", (double)e->stats.bytes_out);
  put(env, o, "reassembledFrames", (double)e->stats.reassembled);
  put(env, o, "directReads", (double)e->stats.direct_reads);
  put(env, o, "queuedWrites", (double)e->stats.queued_writes);
  put(env, o, "pingsAnswered", (double)e->stats.pings_answered);
  put(env, o, "pingsSent", (double)e->stats.pings_sent);
  put(env, o, "unresponsive", (double)e->stats.unresponsive);
  put(env, o, "frameCalls", (double)e->stats.frame_calls);
  put(env, o, "connectionStructBytes", sizeof(conn));
  put(env, o, "readBufferBytes", READ_BUFFER_SIZE);
  return o;
}

/* ---- environment lifecycle ----------------------------------------------------------------- */

static void on_teardown(napi_async_cleanup_hook_handle handle, void *arg) {
  upstream_env *e = arg;
  e->cleanup_handle = handle;
  env_close_all(e);
}

static void on_env_finalized(napi_env env, void *data, void *hint) {
  upstream_env *e = data;
  e->env_gone = true;
  e->tearing_down = true;
  env_free_if_done(e);
}

/* stdio.c: not part of the upstream leg; the primary uses it once at start. */
napi_value js_separate_stdout(napi_env env, napi_callback_info info);

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  upstream_env *e = calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  e->env = env;
  e->loop = loop;
  e->key_offset = sizeof e->key_pool;
  e->read_buffer = malloc(READ_BUFFER_SIZE);
  e->block_pool = malloc(WRITE_BLOCK_POOL_MAX * sizeof *e->block_pool);
  if (e->read_buffer == NULL || e->block_pool == NULL) return NULL;
  e->frame_table = malloc(FRAME_TABLE_FRAMES * 3 * sizeof *e->frame_table);
  if (e->frame_table == NULL) return NULL;
  napi_value ab, view, table_ab, table, resource, name;
  CHECK(napi_create_external_arraybuffer(env, e->read_buffer, READ_BUFFER_SIZE, NULL, NULL, &ab));
  CHECK(napi_create_reference(env, ab, 1, &e->read_array_buffer));
  CHECK(napi_create_typedarray(env, napi_uint8_array, READ_BUFFER_SIZE, ab, 0, &view));
  CHECK(napi_create_reference(env, view, 1, &e->read_view));
  CHECK(napi_create_external_arraybuffer(env, e->frame_table, FRAME_TABLE_FRAMES * 3 * sizeof *e->frame_table, NULL, NULL, &table_ab));
  CHECK(napi_create_typedarray(env, napi_uint32_array, FRAME_TABLE_FRAMES * 3, table_ab, 0, &table));
  CHECK(napi_create_reference(env, table, 1, &e->frame_table_ref));
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_create_reference(env, resource, 1, &e->resource));
  CHECK(napi_create_string_utf8(env, "SluiceUpstream", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, resource, name, &e->async_context));
  CHECK(napi_set_instance_data(env, e, on_env_finalized, NULL));
  env_start(e);
  CHECK(napi_add_async_cleanup_hook(env, on_teardown, e, NULL));

  napi_property_descriptor methods[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"writeRaw", NULL, js_write_raw, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"startFraming", NULL, js_start_framing, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"sendMessage", NULL, js_send_message, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"sendClose", NULL, js_send_close, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"pause", NULL, js_pause, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"resume", NULL, js_resume, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"setDeadline", NULL, js_set_deadline, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"destroy", NULL, js_destroy, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"queuedBytes", NULL, js_queued, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
      {"separateStdout", NULL, js_separate_stdout, NULL, NULL, NULL, napi_enumerable | napi_writable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods));
  CHECK(loadgen_define(env, exports));
  return exports;
}
