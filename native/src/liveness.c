/*
 * Liveness pings on the native leg (websocket.pingInterval / pongTimeout): finding a backend that stopped
 * without closing anything. A read sets F_HEARD (one OR per read, no clock); one timer per thread sweeps
 * the slots every liveness_period: a connection heard since the last sweep is quiet from now; one quiet for
 * ping_interval gets an empty ping; one with a ping out for pong_timeout is reported CLOSE_UNRESPONSIVE and
 * dropped. A paused connection is never quiet (it is not being read) and a closing one has its own
 * deadline. Cost: 5 bytes of the conn (in its padding) and an O(slots) pass per period; a backend is found
 * dead within ping_interval + pong_timeout + 3 periods.
 */
#include "upstream.h"

static void on_liveness(uv_timer_t *timer);

static uint8_t liveness_profile(upstream_env *e, uint32_t interval, uint32_t timeout) {
  for (uint32_t i = 1; i < e->liveness_profile_count; i++) {
    if (e->liveness_profiles[i][0] == interval && e->liveness_profiles[i][1] == timeout) return (uint8_t)i;
  }
  if (e->liveness_profile_count == 0) e->liveness_profile_count = 1;
  if (e->liveness_profile_count == LIVENESS_PROFILES) {
    /* More distinct settings than slots (many reloads that changed them): reuse the last one. */
    e->liveness_profiles[LIVENESS_PROFILES - 1][0] = interval;
    e->liveness_profiles[LIVENESS_PROFILES - 1][1] = timeout;
    return LIVENESS_PROFILES - 1;
  }
  uint32_t i = e->liveness_profile_count++;
  e->liveness_profiles[i][0] = interval;
  e->liveness_profiles[i][1] = timeout;
  return (uint8_t)i;
}

void conn_watch_liveness(conn *c, uint32_t ping_interval_ms, uint32_t pong_timeout_ms) {
  upstream_env *e = c->owner;
  if (c->liveness == 0) e->liveness_watched++;
  c->liveness = liveness_profile(e, ping_interval_ms, pong_timeout_ms);
  c->liveness_at = (uint32_t)uv_now(e->loop);
  c->flags &= ~(F_HEARD | F_PINGED);
  uint32_t shorter = ping_interval_ms < pong_timeout_ms ? ping_interval_ms : pong_timeout_ms;
  uint32_t period = shorter / 4;
  if (period < LIVENESS_PERIOD_MIN_MS) period = LIVENESS_PERIOD_MIN_MS;
  if (period > LIVENESS_PERIOD_MAX_MS) period = LIVENESS_PERIOD_MAX_MS;
  if (e->liveness_period == 0 || period < e->liveness_period) {
    e->liveness_period = period;
    uv_timer_start(&e->liveness_timer, on_liveness, period, period);
  }
}

void liveness_unwatch(conn *c) {
  if (c->liveness == 0) return;
  upstream_env *e = c->owner;
  c->liveness = 0;
  if (--e->liveness_watched == 0 && e->liveness_period != 0) {
    uv_timer_stop(&e->liveness_timer);
    e->liveness_period = 0;
  }
}

static void on_liveness(uv_timer_t *timer) {
  upstream_env *e = timer->data;
  uint32_t now = (uint32_t)uv_now(e->loop);
  bool entered = false;
  napi_callback_scope scope = NULL;
  napi_handle_scope handles = NULL;
  /* Re-read slots and slot_count each time: a report runs JavaScript, which may open connections. */
  for (uint32_t i = 0; i < e->slot_count; i++) {
    conn *c = e->slots[i];
    if (c == NULL || c->liveness == 0 || c->state != CONN_FRAMING || (c->flags & (F_CLOSE_SENT | F_HANDLE_CLOSING))) continue;
    if (c->flags & (F_HEARD | F_PAUSED)) {
      c->flags &= ~(F_HEARD | F_PINGED);
      c->liveness_at = now;
      continue;
    }
    const uint32_t *profile = e->liveness_profiles[c->liveness];
    uint32_t quiet = now - c->liveness_at; /* wraps correctly every 49 days */
    if (c->flags & F_PINGED) {
      if (quiet < profile[1]) continue;
      if (!entered) {
        js_enter(e, &scope, &handles);
        entered = true;
      }
      e->stats.unresponsive++;
      js_on_close(c, 1006, NULL, 0, CLOSE_UNRESPONSIVE, UV_ETIMEDOUT);
      conn_finish(c, false);
    } else if (quiet >= profile[0]) {
      frames_send(c, 0x9, NULL, 0);
      e->stats.pings_sent++;
      c->flags |= F_PINGED;
      c->liveness_at = now;
    }
  }
  if (entered) js_leave(e, scope, handles);
}

