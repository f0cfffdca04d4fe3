/*
 * The native leg's per-thread state and its own handles (the flush prepare/check pair, the deadline and
 * liveness timers): started with the thread's first init(), closed at environment teardown, and freed
 * when the last of its handles and its napi_env are gone. Split from connection.c.
 */
#include "upstream.h"

#include <stdlib.h>

/* The state outlives whichever comes last: its napi_env (finalizer) or its last open handle. */
void env_free_if_done(upstream_env *e) {
  if (e->env_gone && e->open_handles == 0) {
    loadgen_free(e);
    free(e->slots);
    free(e->generations);
    free(e->free_slots);
    for (uint32_t i = 0; i < e->block_pool_count; i++) free(e->block_pool[i]);
    for (uint32_t i = 0; i < e->large_pool_count; i++) free(e->large_pool[i]);
    free(e->block_pool);
    free(e->read_buffer);
    free(e->frame_table);
    free(e);
  }
}

void env_handle_closed(upstream_env *e) {
  if (--e->open_handles > 0 || !e->tearing_down) return;
  if (e->cleanup_handle != NULL) {
    napi_async_cleanup_hook_handle handle = e->cleanup_handle;
    e->cleanup_handle = NULL;
    napi_remove_async_cleanup_hook(handle);
  }
  env_free_if_done(e);
}

static void on_env_handle_closed(uv_handle_t *handle) { env_handle_closed(handle->data); }

/* Close one of the env's own handles (counted in open_handles) at teardown. */
void env_close_handle(upstream_env *e, uv_handle_t *handle) {
  handle->data = e;
  uv_close(handle, on_env_handle_closed);
}

void env_start(upstream_env *e) {
  uv_prepare_init(e->loop, &e->flush_before_poll);
  uv_check_init(e->loop, &e->flush_after_poll);
  uv_timer_init(e->loop, &e->deadline_timer);
  uv_timer_init(e->loop, &e->liveness_timer);
  e->flush_before_poll.data = e->flush_after_poll.data = e->deadline_timer.data = e->liveness_timer.data = e;
  /* Deadlines and pings never keep a thread alive by themselves: a dial or a close holds its own handle. */
  uv_unref((uv_handle_t *)&e->deadline_timer);
  uv_unref((uv_handle_t *)&e->liveness_timer);
  e->open_handles += 4;
}
