/*
 * RFC 6455 as a client, for the upstream leg: parse the backend's (unmasked) frames in place and
 * encode our (masked) frames straight into the connection's pending write block.
 *
 * Data frames are not handed to JavaScript one by one: each joins the read's batch (addon.c batch_add), three
 * numbers in a table JavaScript reads once per read. A frame that arrived whole stays in the buffer it was
 * read into; only a frame split across reads is copied, into a reassembly block sized to that frame (never
 * larger than maxMessageSize plus its header), and that block is then handed to JavaScript as the
 * payload's ArrayBuffer instead of being copied again. Pings are answered here; protocol errors close with
 * 1002 and oversize messages with 1009, and are reported through onClose.
 */
#include "upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/random.h>
#endif

enum opcode { OP_CONTINUATION = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xa };

#define MAX_HEADER 14

static size_t header_length(uint8_t b1) {
  uint8_t len7 = b1 & 0x7f;
  return len7 < 126 ? 2 : len7 == 126 ? 4 : 10;
}

/* Close codes a peer may put on the wire (RFC 6455 §7.4; 1004-1006 and 1015 are reserved). */
static bool is_sendable_close_code(uint32_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* Validate a complete header; on success store the payload length. On failure the connection has
 * been failed (and reported) and false is returned. The rules and their order (reserved bits, mask,
 * length, opcode and control-frame shape, size) are the ones backend-frames.ts applies to the Node
 * socket leg, with the same close codes and reasons; test/backend-frames.test.ts runs both. */
static bool check_header(conn *c, const uint8_t *h, uint64_t *length_out) {
  uint8_t b0 = h[0], b1 = h[1];
  uint8_t opcode = b0 & 0x0f;
  if (b0 & 0x70) {
    frames_fail(c, 1002, "backend set reserved bits", CLOSE_PROTOCOL);
    return false;
  }
  if (b1 & 0x80) {
    frames_fail(c, 1002, "backend sent a masked frame", CLOSE_PROTOCOL);
    return false;
  }
  uint64_t length = b1 & 0x7f;
  if (length == 126) {
    length = ((uint64_t)h[2] << 8) | h[3];
  } else if (length == 127) {
    if (h[2] & 0x80) { /* RFC 6455 5.2: the most significant bit of a 64-bit length must be 0 */
      frames_fail(c, 1002, "backend sent an invalid frame length", CLOSE_PROTOCOL);
      return false;
    }
    length = 0;
    for (int i = 2; i < 10; i++) length = (length << 8) | h[i];
  }
  bool control = (opcode & 0x08) != 0;
  if (control) {
    if (opcode != OP_CLOSE && opcode != OP_PING && opcode != OP_PONG) {
      frames_fail(c, 1002, "backend sent an unknown opcode", CLOSE_PROTOCOL);
      return false;
    }
    if (length > 125 || !(b0 & 0x80)) {
      frames_fail(c, 1002, "backend sent an invalid control frame", CLOSE_PROTOCOL);
      return false;
    }
  } else if (opcode > OP_BINARY) {
    frames_fail(c, 1002, "backend sent an unknown opcode", CLOSE_PROTOCOL);
    return false;
  }
  if (length > c->max_message) {
    frames_fail(c, 1009, "message too big", CLOSE_OVERSIZE);
    return false;
  }
  *length_out = length;
  return true;
}

/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF), for close reasons
 * only (at most 123 bytes): a reason the client's WebSocket library would reject must not be passed on. */
static bool is_utf8(const uint8_t *s, size_t length) {
  size_t i = 0;
  while (i < length) {
    uint8_t b = s[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      n = 2;
      if (b == 0xe0) lo = 0xa0;
      if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3;
      if (b == 0xf0) lo = 0x90;
      if (b == 0xf4) hi = 0x8f;
    } else return false;
    if (i + n >= length) return false; /* truncated sequence */
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

static void receive_close(conn *c, const uint8_t *payload, size_t length) {
  uint16_t code = 1005; /* no status received */
  if (length == 1) {
    frames_fail(c, 1002, "invalid close frame", CLOSE_PROTOCOL);
    return;
  }
  if (length >= 2) {
    code = (uint16_t)((payload[0] << 8) | payload[1]);
    if (!is_sendable_close_code(code)) {
      frames_fail(c, 1002, "invalid close frame", CLOSE_PROTOCOL);
      return;
    }
  }
  const uint8_t *reason = length > 2 ? payload + 2 : NULL;
  size_t reason_length = length > 2 ? length - 2 : 0;
  if (reason_length > 0 && !is_utf8(reason, reason_length)) {
    frames_fail(c, 1007, "backend sent a close reason that is not UTF-8", CLOSE_PROTOCOL);
    return;
  }
  /* Answer with the same code (the closing handshake), unless we started it. */
  if (!(c->flags & F_CLOSE_SENT)) frames_send_close(c, code == 1005 ? 0 : code, reason, reason_length);
  js_on_close(c, code, reason, reason_length, CLOSE_FRAME, 0);
  conn_finish(c, true);
}

static void deliver(conn *c, source *src, uint8_t b0, size_t start, size_t length) {
  uint8_t opcode = b0 & 0x0f;
  bool fin = (b0 & 0x80) != 0;
  upstream_env *e = c->owner;
  switch (opcode) {
    case OP_TEXT:
    case OP_BINARY:
      if (c->fragment_opcode != 0) {
        frames_fail(c, 1002, "backend started a message inside a fragmented one", CLOSE_PROTOCOL);
        return;
      }
      if (fin) e->stats.messages_in++;
      else {
        c->fragment_opcode = opcode;
        c->fragment_bytes = length;
      }
      batch_add(c, src, opcode, fin, start, length);
      return;
    case OP_CONTINUATION:
      if (c->fragment_opcode == 0) {
        frames_fail(c, 1002, "backend sent a continuation with no message", CLOSE_PROTOCOL);
        return;
      }
      c->fragment_bytes += length;
      if (c->fragment_bytes > c->max_message) {
        frames_fail(c, 1009, "message too big", CLOSE_OVERSIZE);
        return;
      }
      if (fin) {
        c->fragment_opcode = 0;
        c->fragment_bytes = 0;
        e->stats.messages_in++;
      }
      batch_add(c, src, OP_CONTINUATION, fin, start, length);
      return;
    case OP_PING:
      /* Each leg answers its own pings: the client's are answered by uWS, the backend's here. */
      if (!(c->flags & F_CLOSE_SENT)) {
        frames_send(c, OP_PONG, src->base + start, length);
        e->stats.pings_answered++;
      }
      return;
    case OP_PONG:
      return;
    case OP_CLOSE:
      receive_close(c, src->base + start, length);
      return;
  }
}

static void start_partial(conn *c, const uint8_t *data, size_t have, size_t need, bool sized) {
  size_t capacity = need > have ? need : have;
  if (capacity < MAX_HEADER) capacity = MAX_HEADER;
  c->partial = malloc(capacity);
  if (c->partial == NULL) {
    frames_fail(c, 1011, "out of memory", CLOSE_ERROR);
    return;
  }
  memcpy(c->partial, data, have);
  c->partial_capacity = (uint32_t)capacity;
  c->partial_length = (uint32_t)have;
  c->partial_need = (uint32_t)need;
  c->partial_sized = sized;
}

void frames_parse(conn *c, source *src, size_t offset, size_t end) {
  const uint8_t *buf = src->base;
  while (offset < end && c->state == CONN_FRAMING) {
    size_t available = end - offset;
    size_t header = available < 2 ? MAX_HEADER : header_length(buf[offset + 1]);
    if (available < header) {
      start_partial(c, buf + offset, available, MAX_HEADER, false);
      return;
    }
    uint64_t length;
    if (!check_header(c, buf + offset, &length)) return;
    if (available < header + length) {
      start_partial(c, buf + offset, available, header + (size_t)length, true);
      return;
    }
    deliver(c, src, buf[offset], offset + header, (size_t)length);
    offset += header + (size_t)length;
  }
}

/* Feed bytes from `src` (NULL: none, the read went straight into the block) into the frame being
 * reassembled. Returns true when the frame was completed and parsing may go on at *offset. */
bool frames_parse_partial(conn *c, source *src, size_t *offset, size_t end) {
  size_t at = *offset;
  size_t left = src != NULL ? end - at : 0;
  if (!c->partial_sized) {
    for (;;) {
      size_t need = c->partial_length < 2 ? 2 : header_length(c->partial[1]);
      if (c->partial_length >= need) break;
      size_t take = need - c->partial_length < left ? need - c->partial_length : left;
      memcpy(c->partial + c->partial_length, src->base + at, take);
      c->partial_length += (uint32_t)take;
      at += take;
      left -= take;
      if (c->partial_length < need) {
        *offset = at;
        return false;
      }
    }
    uint64_t length;
    if (!check_header(c, c->partial, &length)) return false;
    size_t frame = header_length(c->partial[1]) + (size_t)length;
    if (frame > c->partial_capacity) {
      uint8_t *grown = realloc(c->partial, frame);
      if (grown == NULL) {
        frames_fail(c, 1011, "out of memory", CLOSE_ERROR);
        return false;
      }
      c->partial = grown;
      c->partial_capacity = (uint32_t)frame;
    }
    c->partial_need = (uint32_t)frame;
    c->partial_sized = 1;
  }
  size_t missing = c->partial_need - c->partial_length;
  size_t take = missing < left ? missing : left;
  if (take > 0) memcpy(c->partial + c->partial_length, src->base + at, take);
  c->partial_length += (uint32_t)take;
  at += take;
  *offset = at;
  if (c->partial_length < c->partial_need) return false;

  uint8_t *block = c->partial;
  size_t frame = c->partial_need;
  source heap = {SOURCE_HEAP, block, c->partial_capacity, NULL, false};
  c->partial = NULL;
  c->partial_length = c->partial_need = c->partial_capacity = 0;
  c->partial_sized = 0;
  c->owner->stats.reassembled++;
  size_t header = header_length(block[1]);
  deliver(c, &heap, block[0], header, frame - header);
  batch_flush(c->owner); /* JavaScript takes the frame before the block may be freed */
  if (!heap.handed_over) free(block); /* else JavaScript owns it now */
  return c->state == CONN_FRAMING;
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* Masking keys must be unpredictable (RFC 6455 §5.3): 4 bytes at a time from a pooled CSPRNG
 * buffer, one refill per 1,024 frames. */
static void refill_key_pool(upstream_env *e) {
#ifdef __linux__
  /* One getrandom(2) for the whole pool: uv_random asks for 256 bytes at a time, 16 syscalls per refill. */
  size_t got = 0;
  while (got < sizeof e->key_pool) {
    ssize_t n = getrandom(e->key_pool + got, sizeof e->key_pool - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += (size_t)n;
  }
  if (got == sizeof e->key_pool) return;
#endif
  uv_random(NULL, NULL, e->key_pool, sizeof e->key_pool, 0, NULL);
}

static void next_mask_key(upstream_env *e, uint8_t key[4]) {
  if (e->key_offset + 4 > sizeof e->key_pool) {
    refill_key_pool(e);
    e->key_offset = 0;
  }
  memcpy(key, e->key_pool + e->key_offset, 4);
  e->key_offset += 4;
}

static void mask_copy(uint8_t *dst, const uint8_t *src, size_t length, const uint8_t key[4]) {
  uint32_t key32;
  memcpy(&key32, key, 4);
  uint64_t key64 = ((uint64_t)key32 << 32) | key32;
  size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= key64;
    memcpy(dst + i, &v, 8);
  }
  for (; i < length; i++) dst[i] = src[i] ^ key[i & 3];
}

void frames_send(conn *c, uint8_t opcode, const uint8_t *payload, size_t length) {
  size_t header = length < 126 ? 6 : length < 65536 ? 8 : 14;
  uint8_t *frame = conn_reserve(c, header + length);
  if (frame == NULL) {
    frames_fail(c, 1011, "out of memory", CLOSE_ERROR);
    return;
  }
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = (uint8_t)(0x80 | length);
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame[2] = (uint8_t)(length >> 8);
    frame[3] = (uint8_t)length;
  } else {
    frame[1] = 0x80 | 127;
    uint64_t l = length;
    for (int i = 9; i >= 2; i--) {
      frame[i] = (uint8_t)l;
      l >>= 8;
    }
  }
  uint8_t *key = frame + header - 4;
  next_mask_key(c->owner, key);
  mask_copy(frame + header, payload, length, key);
  conn_mark_dirty(c);
}

/* code 0 sends a close frame with no status. The reason is cut to the 123 bytes that fit. */
void frames_send_close(conn *c, uint16_t code, const uint8_t *reason, size_t reason_length) {
  uint8_t payload[125];
  size_t length = 0;
  if (code != 0) {
    if (reason_length > 123) reason_length = 123;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reason_length > 0) memcpy(payload + 2, reason, reason_length);
    length = 2 + reason_length;
  }
  c->flags |= F_CLOSE_SENT;
  frames_send(c, OP_CLOSE, payload, length);
}

/* A breach by the backend (or our own failure): tell it why, report, and close after the flush. */
void frames_fail(conn *c, uint16_t code, const char *reason, enum close_kind kind) {
  if (c->state == CONN_CLOSED) return;
  size_t reason_length = strlen(reason);
  if (!(c->flags & F_CLOSE_SENT) && kind != CLOSE_ERROR) frames_send_close(c, code, (const uint8_t *)reason, reason_length);
  js_on_close(c, code, (const uint8_t *)reason, reason_length, kind, 0);
  conn_finish(c, true);
}
