/*
 * Shared declarations of the native upstream leg: one `upstream_env` per Node environment (main
 * thread or worker thread) and one `conn` per backend connection, both living on that thread's
 * libuv loop. Nothing here is shared between threads.
 *
 * Memory per connection is the point of this addon: a `conn` is the uv_tcp_t plus ~100 bytes of
 * state. There is no per-connection read buffer (one 256 KiB buffer per thread); a reassembly
 * buffer exists only while a frame is split across reads, a write buffer only while bytes wait.
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include <node_api.h>
#include <uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The thread's one read buffer. A framing connection reads at most FRAME_READ_SIZE at a time, so a backend
 * that floods adds at most that much to its client's buffer between two backpressure checks; a raw one (a
 * plain HTTP answer) reads up to all of it: a 1 MiB body then costs 4 reads and calls into JavaScript
 * instead of 16, about 30 % less proxy CPU per such request here. */
#define READ_BUFFER_SIZE (256 * 1024)
#define FRAME_READ_SIZE (64 * 1024)
/* Write blocks of these two sizes are recycled through per-thread free lists (small: a turn's few
 * messages; large: a 4 KiB+ message or a busy turn, so that neither costs a malloc and free per flush);
 * larger ones are malloc'd. */
#define WRITE_BLOCK_SIZE 4096
#define WRITE_BLOCK_POOL_MAX 256
#define LARGE_BLOCK_SIZE (64 * 1024)
#define LARGE_BLOCK_POOL_MAX 16
/* A frame still missing at least this many bytes is read straight into its reassembly buffer. */
#define DIRECT_READ_MIN (16 * 1024)
/* How long a connection that is being closed may take to flush its last frames. */
#define LINGER_MS 5000
/* Frames of one read handed to JavaScript in one onFrames call: 3 uint32 each (flags, start, length). A
 * read with more frames than this (64 KiB of tiny ones) takes more than one call. */
#define FRAME_TABLE_FRAMES 1024
#define FRAME_FIN 0x10      /* in a frame's flags: the frame ends its message */
#define FRAME_IN_BLOCK 0x20 /* the payload is in the call's `block` (a reassembled frame), not the read buffer */
/* Distinct (pingInterval, pongTimeout) pairs per thread; index 0 means pings off. */
#define LIVENESS_PROFILES 16
/* The liveness sweep runs every quarter of the shorter setting, within these bounds. */
#define LIVENESS_PERIOD_MIN_MS 20
#define LIVENESS_PERIOD_MAX_MS 1000

/* Connection ids: low bits index the slot table, high bits count reuses of the slot, so a stale id
 * held by JavaScript after onClose never reaches the slot's next connection. Ids stay below 2^31. */
#define ID_INDEX_BITS 20
#define ID_INDEX_MASK ((1u << ID_INDEX_BITS) - 1)
#define ID_GENERATION_MASK 0x7ffu

enum conn_state {
  CONN_CONNECTING = 0,
  CONN_RAW = 1,     /* connected; bytes go to onRaw (the HTTP upgrade answer) */
  CONN_FRAMING = 2, /* RFC 6455 frames go to onMessage */
  CONN_CLOSED = 3,  /* reported (or destroyed); only flushing and closing the handle remain */
};

/* Why onClose fired (the `kind` argument). Keep in step with CloseKind in native/index.js. */
enum close_kind {
  CLOSE_FRAME = 0,    /* the backend sent a close frame (code and reason are its own) */
  CLOSE_EOF = 1,      /* the backend closed TCP without a close frame (1006) */
  CLOSE_ERROR = 2,    /* a socket error (1006; status is the libuv error code) */
  CLOSE_PROTOCOL = 3, /* the backend broke RFC 6455; Sluice sent it 1002 */
  CLOSE_OVERSIZE = 4, /* a message over maxMessageSize; Sluice sent it 1009 */
  CLOSE_TIMEOUT = 5,  /* the deadline set with setDeadline passed (status UV_ETIMEDOUT) */
  CLOSE_UNRESPONSIVE = 6, /* no byte came within pongTimeout of a liveness ping: dropped (status UV_ETIMEDOUT) */
};

enum conn_flag {
  F_PAUSED = 1 << 0,
  F_CLOSE_SENT = 1 << 1,
  F_DIRTY = 1 << 2,          /* in the env's list of connections with unflushed writes */
  F_HANDLE_CLOSING = 1 << 3, /* uv_close called */
  F_CLOSE_AFTER_FLUSH = 1 << 4,
  F_BOUND = 1 << 5,
  F_LOADGEN = 1 << 6, /* a load generator client (loadgen.c): reads and events never go to JavaScript per frame */
  F_HEARD = 1 << 7,   /* something was read since the last liveness sweep */
  F_PINGED = 1 << 8,  /* a liveness ping is outstanding; liveness_at is when it went out */
};

typedef struct write_req {
  uv_write_t req;
  uint8_t *block;
  uint32_t capacity;
  uint32_t length;
} write_req;

typedef struct upstream_env upstream_env;
typedef struct loadgen loadgen;

typedef struct conn {
  uv_tcp_t tcp; /* first: a uv_handle_t* is a conn* */
  upstream_env *owner;
  uint32_t id;
  uint8_t state;
  uint16_t flags;
  uint8_t fragment_opcode; /* opcode of a fragmented message in progress, 0 when none */
  uint8_t in_deadline_list;
  uint8_t partial_sized; /* partial_need is the whole frame (its header is in) */
  uint8_t liveness;      /* index of this connection's (pingInterval, pongTimeout) in the env, 0: no pings */
  uint32_t max_message;
  uint64_t fragment_bytes;
  /* reassembly of one frame split across reads: `partial_need` is the full frame size once the
   * header is known, else 14 (the largest header) */
  uint8_t *partial;
  uint32_t partial_length;
  uint32_t partial_need;
  uint32_t partial_capacity;
  /* uv_now() ms (low 32 bits) when the backend was last heard by a sweep, or when the ping went out (F_PINGED) */
  uint32_t liveness_at;
  /* bytes waiting for the next flush, and the one write in flight (if any) */
  uint8_t *pending;
  uint32_t pending_length;
  uint32_t pending_capacity;
  write_req *in_flight;
  struct conn *next_dirty;
  struct conn *deadline_prev, *deadline_next;
  uint64_t deadline; /* uv_now() ms */
  uv_connect_t *connect_req; /* only while connecting */
} conn;

/* Where the bytes being parsed live decides how a payload view is made for JavaScript. */
enum source_kind {
  SOURCE_READ_BUFFER = 0, /* the thread's static read buffer: a view on its external ArrayBuffer */
  SOURCE_HEAP = 1,        /* a malloc'd block: wrapped once in an ArrayBuffer that frees it on GC */
};

typedef struct source {
  enum source_kind kind;
  uint8_t *base;
  size_t capacity;
  napi_value array_buffer; /* created on first delivery for SOURCE_HEAP */
  bool handed_over;        /* the block now belongs to array_buffer (freed by GC), not to us */
} source;

struct upstream_env {
  napi_env env;
  uv_loop_t *loop;
  bool initialized;
  bool tearing_down;
  napi_ref on_open, on_raw, on_frames, on_close, on_drain;
  /* The frames of the read being parsed, handed to onFrames in one call (batch_flush): the table JavaScript
   * reads (a Uint32Array made once), the connection they belong to, and the reassembly block some of them
   * may be in (at most one per call: it is flushed before that block is let go). */
  uint32_t *frame_table;
  napi_ref frame_table_ref;
  uint32_t batch_count;
  conn *batch_conn;
  source *batch_block;
  napi_ref resource;
  napi_async_context async_context;
  napi_ref read_array_buffer;
  napi_ref read_view; /* a Uint8Array over the read buffer, made once, handed to JavaScript by init() */
  uint8_t *read_buffer;

  conn **slots;
  uint16_t *generations;
  uint32_t slot_count;
  uint32_t *free_slots; /* FIFO ring of free slot indexes, so a slot rests before its reuse */
  uint32_t free_head, free_count, free_capacity;

  conn *dirty;
  uv_prepare_t flush_before_poll;
  uv_check_t flush_after_poll;
  bool flush_started;

  conn *deadlines;
  uv_timer_t deadline_timer;
  uint64_t timer_due;

  /* Liveness pings (websocket.pingInterval / pongTimeout): one sweep timer over every framing connection. */
  uv_timer_t liveness_timer;
  uint32_t liveness_period; /* ms; 0 while the timer is stopped */
  uint32_t liveness_watched; /* connections with pings on */
  uint32_t liveness_profiles[LIVENESS_PROFILES][2];
  uint32_t liveness_profile_count; /* entry 0 is unused (pings off) */

  uint8_t **block_pool;
  uint32_t block_pool_count;
  uint8_t *large_pool[LARGE_BLOCK_POOL_MAX];
  uint32_t large_pool_count;

  uint8_t key_pool[4096];
  uint32_t key_offset;

  loadgen *loadgen; /* the load generator's state (loadgen.c), NULL until lgInit on this thread */

  uint32_t open_handles; /* tcp handles not yet closed + the env's own handles */
  bool env_gone;         /* the napi_env finalized this state; free it when the last handle closes */
  napi_async_cleanup_hook_handle cleanup_handle;

  struct {
    uint64_t connections, connecting, framing;
    uint64_t messages_in, messages_out, bytes_in, bytes_out;
    uint64_t reassembled, direct_reads, queued_writes, pings_answered, pings_sent, unresponsive, frame_calls;
  } stats;
};

/* tables.c */
bool slot_claim(upstream_env *e, conn *c);
void slot_release(conn *c);
conn *conn_lookup(upstream_env *e, uint32_t id);
uint8_t *block_get(upstream_env *e, size_t size, uint32_t *capacity);
void block_release(upstream_env *e, uint8_t *block, uint32_t capacity);

/* env.c */
void env_start(upstream_env *e);
void env_free_if_done(upstream_env *e);
void env_handle_closed(upstream_env *e);
void env_close_handle(upstream_env *e, uv_handle_t *handle);

/* connection.c */
/* `extra` bytes of zeroed state follow the conn in the same allocation (loadgen.c keeps its per-connection state there). */
int conn_connect(upstream_env *e, const char *host, int port, uint32_t dial_timeout_ms, const char *local_address, size_t extra, uint32_t *id_out);
void conn_write_raw(conn *c, const uint8_t *data, size_t length);
uint8_t *conn_reserve(conn *c, size_t length);
void conn_mark_dirty(conn *c);
uint64_t conn_queued_bytes(const conn *c);
void conn_pause(conn *c);
void conn_resume(conn *c);
void conn_set_deadline(conn *c, uint32_t ms);
void conn_destroy(conn *c);
void conn_finish(conn *c, bool flush_first);
void env_close_all(upstream_env *e);

/* liveness.c */
void conn_watch_liveness(conn *c, uint32_t ping_interval_ms, uint32_t pong_timeout_ms);
void liveness_unwatch(conn *c);

/* frames.c */
void frames_parse(conn *c, source *src, size_t offset, size_t end);
bool frames_parse_partial(conn *c, source *src, size_t *offset, size_t end);
void frames_send(conn *c, uint8_t opcode, const uint8_t *payload, size_t length);
void frames_send_close(conn *c, uint16_t code, const uint8_t *reason, size_t reason_length);
void frames_fail(conn *c, uint16_t code, const char *reason, enum close_kind kind);

/* addon.c: calls into JavaScript (each opens its own handle scope; the caller opens the callback scope) */
void js_enter(upstream_env *e, napi_callback_scope *scope, napi_handle_scope *handles);
void js_leave(upstream_env *e, napi_callback_scope scope, napi_handle_scope handles);
bool js_scope_open(upstream_env *e);
void js_on_open(conn *c, int status);
void js_on_raw(conn *c, size_t length);
void batch_add(conn *c, source *src, uint8_t opcode, bool fin, size_t start, size_t length);
void batch_flush(upstream_env *e);
void js_on_close(conn *c, uint16_t code, const uint8_t *reason, size_t reason_length, enum close_kind kind, int status);
void js_on_drain(conn *c);

/* loadgen.c: the load generator's side of a connection (F_LOADGEN), called by connection.c and addon.c */
void loadgen_on_read(conn *c, ssize_t nread, const uv_buf_t *buf);
void loadgen_on_open(conn *c, int status);
void loadgen_on_close(conn *c, enum close_kind kind, int status);
void loadgen_before_flush(upstream_env *e);
void loadgen_conn_freed(conn *c);
void loadgen_teardown(upstream_env *e);
void loadgen_free(upstream_env *e);
napi_status loadgen_define(napi_env env, napi_value exports);

#endif
