/*
 * The load generator's per-thread state and per-connection state (the `extra` bytes after each conn
 * it opens), shared by loadgen.c (the client) and loadgen-api.c (its JavaScript face).
 */
#ifndef SLUICE_LOADGEN_H
#define SLUICE_LOADGEN_H

#include "upstream.h"

/* Round trips in microseconds, 1 µs to an hour at 3 significant digits (hdr-histogram-js's layout). */
#define LG_HIST_MAX 3600000000ull
#define LG_HIST_BUCKETS 23552

typedef struct lg_hist {
  uint64_t counts[LG_HIST_BUCKETS];
  uint64_t total;
} lg_hist;

/* LG_RECEIVE: open and only read what the server pushes: binary messages whose first 8 bytes are their
 * publish time (a Float64 of Unix milliseconds, as fan-out publishers stamp it), for publish-to-receive
 * latency; text messages are only counted in raw_received. */
enum lg_scenario { LG_CONNECT = 0, LG_ECHO = 1, LG_THROUGHPUT = 2, LG_RECEIVE = 3 };
enum lg_conn_state { LG_UPGRADING = 0, LG_OPEN = 1, LG_CLOSING = 2, LG_DONE = 3 };
/* Why a connection ended; keep in step with REASONS in loadtest/native-client.ts. */
enum lg_reason {
  LG_R_NONE = 0, /* we closed it */
  LG_R_REFUSED = 1,
  LG_R_RESET = 2,
  LG_R_TIMEOUT = 3,
  LG_R_CLOSED = 4,
  LG_R_BAD_RESPONSE = 5,
  LG_R_STATUS = 6, /* detail: the HTTP status */
  LG_R_BAD_ACCEPT = 7,
  LG_R_MASKED = 8,
  LG_R_ERROR = 9, /* detail: the libuv error */
};

typedef struct lg_conn {
  uint8_t state;
  uint8_t failure;
  bool was_open;
  bool in_frame; /* a frame's header is in, its payload is still coming */
  bool fin;
  bool stamped;  /* message_stamp holds the message's send stamp */
  uint8_t opcode;
  uint8_t header_have;
  uint8_t stamp_have;
  uint8_t control_length;
  uint16_t peer_code;
  int32_t detail;
  uint8_t header[14];
  uint8_t stamp[8];
  uint8_t control[125];
  uint64_t payload_left;
  uint64_t message_length;
  uint64_t message_stamp;
  uint64_t started_ns;
  uint64_t sent, received; /* measured */
  uint32_t owed;           /* closed loop: sends earned, framed at the next flush */
  /* the upgrade request until connected, then the answer's head while it is split across reads */
  char *head;
  uint32_t head_length;
  char accept[32];
} lg_conn;

struct loadgen {
  upstream_env *e;
  napi_ref on_open, on_close;
  int scenario;
  uint32_t size, in_flight, interval_ms, threads, thread, timeout_ms;
  bool running, measuring;
  uint64_t measure_start; /* UINT64_MAX until measuring */
  uint64_t attempted, opened, raw_sent, raw_received, sent, received, bytes_sent, bytes_received, corrupt;
  uint32_t open_count;
  uint8_t *body; /* the message template; bytes 0-7 take the stamp */
  uint32_t *held, held_count, held_capacity; /* ids in the order they opened */
  uint32_t *owed, owed_count, owed_capacity; /* ids that earned sends this turn */
  uint32_t *slot_start, *slot_ids, slot_count; /* open loop: the connections of each tick slot */
  double tick_ns;
  uint64_t tick_start, next_tick;
  uv_timer_t ticker;
  lg_hist *rtt, *recent, *lag;
};

lg_conn *lg_of(conn *c);
void lg_hist_record(lg_hist *h, uint64_t micros);
void lg_hist_reset(lg_hist *h);
uint64_t lg_hist_value(uint32_t index);
bool lg_start_traffic(loadgen *lg);
void lg_stop_traffic(loadgen *lg);
int lg_connect(loadgen *lg, const char *host, int port, const char *local, const uint8_t *request, size_t request_length, const char *accept, uint32_t *id);
void lg_close_all(loadgen *lg, uint16_t code, uint32_t timeout_ms);
void lg_destroy_all(loadgen *lg);
bool lg_outstanding(loadgen *lg);
/* shared by loadgen.c and loadgen-read.c */
void lg_owe(loadgen *lg, conn *c, lg_conn *lc, uint32_t n);
void lg_report_open(loadgen *lg, conn *c, lg_conn *lc);
void lg_report_close(loadgen *lg, conn *c, lg_conn *lc);
void lg_set_failure(lg_conn *lc, uint8_t reason, int32_t detail);
uint8_t lg_classify(int status);
void lg_finish(loadgen *lg, conn *c, lg_conn *lc, bool flush);

#endif
