/*
 * The per-thread tables a backend connection borrows from: its id (a slot in a table that grows, with a
 * generation per slot so a stale id never finds a newer connection, and a ring of free slots) and the
 * pooled write blocks its pending bytes live in. Split from connection.c, which uses them.
 */
#include "upstream.h"

#include <stdlib.h>

/* ---- ids --------------------------------------------------------------------------------- */

static bool slots_grow(upstream_env *e) {
  uint32_t old_count = e->slot_count;
  uint32_t count = old_count == 0 ? 1024 : old_count * 2;
  if (count > ID_INDEX_MASK + 1) count = ID_INDEX_MASK + 1;
  if (count == old_count) return false;
  conn **slots = realloc(e->slots, count * sizeof *slots);
  if (slots == NULL) return false;
  e->slots = slots;
  uint16_t *generations = realloc(e->generations, count * sizeof *generations);
  if (generations == NULL) return false;
  e->generations = generations;
  uint32_t *ring = malloc(count * sizeof *ring);
  if (ring == NULL) return false;
  uint32_t n = 0;
  for (uint32_t i = 0; i < e->free_count; i++) ring[n++] = e->free_slots[(e->free_head + i) % e->free_capacity];
  for (uint32_t i = old_count; i < count; i++) {
    slots[i] = NULL;
    generations[i] = 1;
    ring[n++] = i;
  }
  free(e->free_slots);
  e->free_slots = ring;
  e->free_head = 0;
  e->free_count = n;
  e->free_capacity = count;
  e->slot_count = count;
  return true;
}

bool slot_claim(upstream_env *e, conn *c) {
  if (e->free_count == 0 && !slots_grow(e)) return false;
  uint32_t index = e->free_slots[e->free_head];
  e->free_head = (e->free_head + 1) % e->free_capacity;
  e->free_count--;
  e->slots[index] = c;
  c->id = ((uint32_t)e->generations[index] << ID_INDEX_BITS) | index;
  e->stats.connections++;
  return true;
}

void slot_release(conn *c) {
  upstream_env *e = c->owner;
  liveness_unwatch(c);
  if (c->id == 0) return;
  uint32_t index = c->id & ID_INDEX_MASK;
  e->slots[index] = NULL;
  uint16_t generation = (uint16_t)((e->generations[index] + 1) & ID_GENERATION_MASK);
  e->generations[index] = generation == 0 ? 1 : generation;
  e->free_slots[(e->free_head + e->free_count) % e->free_capacity] = index;
  e->free_count++;
  e->stats.connections--;
  c->id = 0;
}

conn *conn_lookup(upstream_env *e, uint32_t id) {
  uint32_t index = id & ID_INDEX_MASK;
  if (id == 0 || index >= e->slot_count) return NULL;
  conn *c = e->slots[index];
  return c != NULL && c->id == id ? c : NULL;
}

/* ---- write blocks ------------------------------------------------------------------------ */

uint8_t *block_get(upstream_env *e, size_t size, uint32_t *capacity) {
  if (size <= WRITE_BLOCK_SIZE) {
    *capacity = WRITE_BLOCK_SIZE;
    if (e->block_pool_count > 0) return e->block_pool[--e->block_pool_count];
    return malloc(WRITE_BLOCK_SIZE);
  }
  if (size <= LARGE_BLOCK_SIZE) {
    *capacity = LARGE_BLOCK_SIZE;
    if (e->large_pool_count > 0) return e->large_pool[--e->large_pool_count];
    return malloc(LARGE_BLOCK_SIZE);
  }
  *capacity = (uint32_t)size;
  return malloc(size);
}

void block_release(upstream_env *e, uint8_t *block, uint32_t capacity) {
  if (block == NULL) return;
  if (capacity == WRITE_BLOCK_SIZE && e->block_pool_count < WRITE_BLOCK_POOL_MAX) {
    e->block_pool[e->block_pool_count++] = block;
    return;
  }
  if (capacity == LARGE_BLOCK_SIZE && e->large_pool_count < LARGE_BLOCK_POOL_MAX) {
    e->large_pool[e->large_pool_count++] = block;
    return;
  }
  free(block);
}
