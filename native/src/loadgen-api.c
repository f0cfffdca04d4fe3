/*
 * The JavaScript face of the load generator's client (loadgen.c), per thread: configure, connect,
 * start/measure/stop, and copy counters and histograms out into typed arrays the caller reuses, so
 * that reading them creates no object. loadtest/native-client.ts is its one caller.
 */
#include "loadgen.h"

#include <stdlib.h>
#include <string.h>

static upstream_env *state_of(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

static napi_value number(napi_env env, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  return v;
}

static uint32_t uint_property(napi_env env, napi_value object, const char *name, uint32_t fallback) {
  napi_value v;
  uint32_t out;
  if (napi_get_named_property(env, object, name, &v) != napi_ok || napi_get_value_uint32(env, v, &out) != napi_ok) return fallback;
  return out;
}

static bool function_ref(napi_env env, napi_value object, const char *name, napi_ref *ref) {
  napi_value fn;
  napi_valuetype type;
  if (napi_get_named_property(env, object, name, &fn) != napi_ok || napi_typeof(env, fn, &type) != napi_ok || type != napi_function) return false;
  if (*ref != NULL) napi_delete_reference(env, *ref);
  return napi_create_reference(env, fn, 1, ref) == napi_ok;
}

static loadgen *loadgen_of(napi_env env) {
  upstream_env *e = state_of(env);
  if (e == NULL || e->loadgen == NULL) {
    napi_throw_error(env, "ERR_SLUICE_LOADGEN_INIT", "call lgInit(options, callbacks) first on this thread");
    return NULL;
  }
  return e->loadgen;
}

static void free_run(loadgen *lg) {
  free(lg->held);
  free(lg->owed);
  free(lg->slot_start);
  free(lg->slot_ids);
  free(lg->body);
  lg->held = lg->owed = lg->slot_start = lg->slot_ids = NULL;
  lg->body = NULL;
  lg->held_count = lg->held_capacity = lg->owed_count = lg->owed_capacity = lg->slot_count = 0;
}

/* lgInit({ scenario, size, inFlight, intervalMs, threads, thread, timeoutMs }, { onOpen, onClose }):
 * a fresh run on this thread (a thread may run several, one after the other). */
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  upstream_env *e = state_of(env);
  if (argc < 2 || e == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "lgInit(options, callbacks)");
    return NULL;
  }
  loadgen *lg = e->loadgen;
  if (lg == NULL) {
    lg = calloc(1, sizeof *lg);
    if (lg == NULL || uv_timer_init(e->loop, &lg->ticker) != 0) {
      free(lg);
      napi_throw_error(env, "ERR_SLUICE_LOADGEN", "lgInit: out of memory");
      return NULL;
    }
    lg->e = e;
    lg->ticker.data = lg;
    uv_unref((uv_handle_t *)&lg->ticker); /* the run's own message port keeps the thread alive */
    e->open_handles++;
    e->loadgen = lg;
  } else {
    if (lg->open_count > 0) {
      napi_throw_error(env, "ERR_SLUICE_LOADGEN", "lgInit: the previous run still has open connections");
      return NULL;
    }
    lg_stop_traffic(lg);
    free_run(lg);
  }
  if (!function_ref(env, argv[1], "onOpen", &lg->on_open) || !function_ref(env, argv[1], "onClose", &lg->on_close)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "lgInit: callbacks.onOpen and callbacks.onClose must be functions");
    return NULL;
  }
  lg->scenario = (int)uint_property(env, argv[0], "scenario", LG_CONNECT);
  lg->size = uint_property(env, argv[0], "size", 64);
  if (lg->size < 8) lg->size = 8;
  lg->in_flight = uint_property(env, argv[0], "inFlight", 1);
  lg->interval_ms = uint_property(env, argv[0], "intervalMs", 100);
  lg->threads = uint_property(env, argv[0], "threads", 1);
  lg->thread = uint_property(env, argv[0], "thread", 0);
  lg->timeout_ms = uint_property(env, argv[0], "timeoutMs", 10000);
  if (lg->threads == 0) lg->threads = 1;
  lg->running = lg->measuring = false;
  lg->measure_start = UINT64_MAX;
  lg->attempted = lg->opened = lg->raw_sent = lg->raw_received = lg->sent = lg->received = 0;
  lg->bytes_sent = lg->bytes_received = lg->corrupt = 0;
  lg->body = malloc(lg->size);
  if (lg->rtt == NULL) lg->rtt = calloc(1, sizeof *lg->rtt);
  if (lg->recent == NULL) lg->recent = calloc(1, sizeof *lg->recent);
  if (lg->lag == NULL) lg->lag = calloc(1, sizeof *lg->lag);
  if (lg->body == NULL || lg->rtt == NULL || lg->recent == NULL || lg->lag == NULL) {
    napi_throw_error(env, "ERR_SLUICE_LOADGEN", "lgInit: out of memory");
    return NULL;
  }
  memset(lg->body, 0, 8);
  for (uint32_t i = 8; i < lg->size; i++) lg->body[i] = (uint8_t)(0x61 + i % 26);
  lg_hist_reset(lg->rtt);
  lg_hist_reset(lg->recent);
  lg_hist_reset(lg->lag);
  return NULL;
}

/* lgConnect(host, port, localAddress | null, request, accept) → id > 0, or a negative libuv error. */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  loadgen *lg = loadgen_of(env);
  if (lg == NULL) return NULL;
  char host[64], local[64], accept[64];
  size_t length;
  int32_t port = 0;
  void *request;
  size_t request_length;
  bool is_buffer = false;
  if (argc < 5 || napi_get_value_string_utf8(env, argv[0], host, sizeof host, &length) != napi_ok || napi_get_value_int32(env, argv[1], &port) != napi_ok ||
      napi_is_buffer(env, argv[3], &is_buffer) != napi_ok || !is_buffer || napi_get_buffer_info(env, argv[3], &request, &request_length) != napi_ok ||
      napi_get_value_string_utf8(env, argv[4], accept, sizeof accept, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "lgConnect(host, port, localAddress, request: Buffer, accept: string)");
    return NULL;
  }
  const char *local_address = napi_get_value_string_utf8(env, argv[2], local, sizeof local, &length) == napi_ok ? local : NULL;
  uint32_t id = 0;
  int rc = lg_connect(lg, host, port, local_address, request, request_length, accept, &id);
  return number(env, rc < 0 ? rc : (double)id);
}

/* lgControl(0 start | 1 measure | 2 stop | 3 measure afresh: a new window even when already measuring) */
static napi_value js_control(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  loadgen *lg = loadgen_of(env);
  uint32_t what = 0;
  if (lg == NULL || argc < 1 || napi_get_value_uint32(env, argv[0], &what) != napi_ok) return NULL;
  if (what == 0 && !lg->running) {
    if (!lg_start_traffic(lg)) napi_throw_error(env, "ERR_SLUICE_LOADGEN", "lgControl(start): out of memory");
  } else if ((what == 1 && !lg->measuring) || what == 3) {
    lg->measuring = true;
    lg->measure_start = uv_hrtime();
    lg->sent = lg->received = lg->corrupt = lg->bytes_sent = lg->bytes_received = 0;
    lg_hist_reset(lg->rtt);
    lg_hist_reset(lg->lag);
  } else if (what == 2) {
    lg_stop_traffic(lg);
  }
  return NULL;
}

/* lgStats(out: Float64Array(12)): attempted, opened, open, rawSent, rawReceived, sent, received,
 * bytesSent, bytesReceived, corrupt, outstanding (0/1), nanoseconds of uv_hrtime now. */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  loadgen *lg = loadgen_of(env);
  napi_typedarray_type type;
  size_t count;
  void *data;
  if (lg == NULL || argc < 1 || napi_get_typedarray_info(env, argv[0], &type, &count, &data, NULL, NULL) != napi_ok || type != napi_float64_array || count < 12) {
    if (lg != NULL) napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "lgStats(out: Float64Array of 12)");
    return NULL;
  }
  double *out = data;
  out[0] = (double)lg->attempted;
  out[1] = (double)lg->opened;
  out[2] = lg->open_count;
  out[3] = (double)lg->raw_sent;
  out[4] = (double)lg->raw_received;
  out[5] = (double)lg->sent;
  out[6] = (double)lg->received;
  out[7] = (double)lg->bytes_sent;
  out[8] = (double)lg->bytes_received;
  out[9] = (double)lg->corrupt;
  out[10] = lg_outstanding(lg) ? 1 : 0;
  out[11] = (double)uv_hrtime();
  return NULL;
}

/* lgHistogram(0 rtt | 1 recent | 2 lag, out: Float64Array, reset) → pairs written as (µs, count);
 * `out` must hold 2 × the non-empty buckets (at most 2 × 23,552). */
static napi_value js_histogram(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  loadgen *lg = loadgen_of(env);
  uint32_t which = 0;
  napi_typedarray_type type;
  size_t count;
  void *data;
  bool reset = false;
  if (lg == NULL || argc < 3 || napi_get_value_uint32(env, argv[0], &which) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &type, &count, &data, NULL, NULL) != napi_ok || type != napi_float64_array) {
    if (lg != NULL) napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "lgHistogram(which, out: Float64Array, reset)");
    return NULL;
  }
  napi_get_value_bool(env, argv[2], &reset);
  lg_hist *h = which == 0 ? lg->rtt : which == 1 ? lg->recent : lg->lag;
  double *out = data;
  size_t pairs = 0;
  if (h->total > 0) {
    for (uint32_t i = 0; i < LG_HIST_BUCKETS && 2 * pairs + 1 < count; i++) {
      if (h->counts[i] == 0) continue;
      out[2 * pairs] = (double)lg_hist_value(i);
      out[2 * pairs + 1] = (double)h->counts[i];
      pairs++;
    }
  }
  if (reset) lg_hist_reset(h);
  return number(env, (double)pairs);
}

/* lgCloseAll(code, timeoutMs) */
static napi_value js_close_all(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  loadgen *lg = loadgen_of(env);
  uint32_t code = 1000, timeout = 1000;
  if (lg == NULL) return NULL;
  if (argc >= 1) napi_get_value_uint32(env, argv[0], &code);
  if (argc >= 2) napi_get_value_uint32(env, argv[1], &timeout);
  lg_close_all(lg, (uint16_t)code, timeout);
  return NULL;
}

static napi_value js_destroy_all(napi_env env, napi_callback_info info) {
  loadgen *lg = loadgen_of(env);
  if (lg != NULL) lg_destroy_all(lg);
  return NULL;
}

/* Environment teardown: the ticker is one of the env's own handles. */
void loadgen_teardown(upstream_env *e) {
  lg_stop_traffic(e->loadgen);
  env_close_handle(e, (uv_handle_t *)&e->loadgen->ticker);
}

/* With the env's state, once every handle (the ticker included) is closed. */
void loadgen_free(upstream_env *e) {
  loadgen *lg = e->loadgen;
  if (lg == NULL) return;
  free_run(lg);
  free(lg->rtt);
  free(lg->recent);
  free(lg->lag);
  free(lg);
  e->loadgen = NULL;
}

napi_status loadgen_define(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"lgInit", NULL, js_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgConnect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgControl", NULL, js_control, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgStats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgHistogram", NULL, js_histogram, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgCloseAll", NULL, js_close_all, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgDestroyAll", NULL, js_destroy_all, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
}
