/**
 * Types of the native upstream addon: Sluice's backend leg (TCP + RFC 6455 client framing) in C on
 * the calling thread's libuv loop. See native/README.md for the contract of each function.
 */

/** Why a connection closed (the `kind` argument of onClose). */
export declare const CloseKind: {
  /** The backend sent a close frame; code and reason are its own (1005 when it gave none). */
  readonly Frame: 0;
  /** The backend closed TCP without a close frame (code 1006). */
  readonly Eof: 1;
  /** A socket error (code 1006; `status` is the negative libuv error code). */
  readonly Error: 2;
  /** The backend broke RFC 6455; Sluice sent it `code`: 1002, or 1007 for a close reason that is not UTF-8 (the reason says what). */
  readonly Protocol: 3;
  /** A backend message over maxMessageSize; Sluice sent it 1009. */
  readonly Oversize: 4;
  /** The deadline set with setDeadline() passed (code 1006, status ETIMEDOUT). */
  readonly Timeout: 5;
  /** Nothing came back within pongTimeout of a liveness ping (startFraming): dropped without a close frame
   *  (code 1006, status ETIMEDOUT). */
  readonly Unresponsive: 6;
};
export type CloseKind = (typeof CloseKind)[keyof typeof CloseKind];

export interface UpstreamCallbacks {
  /** Connect result: 0, or a negative libuv error code (ECONNREFUSED -111, ETIMEDOUT -110 on Linux).
   *  After a failure the id is gone. */
  onOpen(id: number, status: number): void;
  /** `length` bytes read before startFraming() (the HTTP answer to the upgrade; on a connection that never
   *  frames, such as plain HTTP, every read), at the start of `readBuffer` (init's result). Valid only during
   *  the call. */
  onRaw(id: number, length: number): void;
  /** The data frames of one read (or of the bytes given to startFraming), in one call: `count` entries of
   *  three numbers in `frames` (init's result): flags (opcode 1 text, 2 binary, 0 continuation, in the low
   *  4 bits; FrameFlag.Fin: the frame ends its message; FrameFlag.InBlock: the payload is in `block`, a
   *  frame that was reassembled, else in `readBuffer`), payload start, payload length. Valid only during
   *  the call (`block` may be kept: it then belongs to JavaScript). */
  onFrames(id: number, count: number, block: ArrayBuffer | undefined): void;
  /** The connection is over (exactly once per opened connection unless destroy() came first); the
   *  id is released when this returns. `reason` is a copy. */
  onClose(id: number, code: number, reason: Buffer, kind: CloseKind, status: number): void;
  /** A write that had to wait for the kernel has completed and nothing else is queued. */
  onDrain?(id: number): void;
}

/** Bits of a frame's flags in the `frames` table besides its opcode. */
export declare const FrameFlag: {
  readonly Fin: 0x10;
  readonly InBlock: 0x20;
};

/** What init() returns: the thread's views the callbacks refer to, made once. */
export interface UpstreamViews {
  /** The thread's read buffer (onRaw's bytes, onFrames' payloads not InBlock). */
  readonly readBuffer: Uint8Array;
  /** onFrames' table: 3 numbers per frame (flags, start, length), 1,024 frames. */
  readonly frames: Uint32Array;
}

export interface UpstreamStats {
  connections: number;
  connecting: number;
  framing: number;
  openHandles: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  reassembledFrames: number;
  directReads: number;
  queuedWrites: number;
  pingsAnswered: number;
  pingsSent: number;
  unresponsive: number;
  frameCalls: number;
  connectionStructBytes: number;
  readBufferBytes: number;
}

export type Bytes = ArrayBuffer | ArrayBufferView;

export interface NativeUpstream {
  /** Once per thread before connect(); calling it again replaces the callbacks. */
  init(callbacks: UpstreamCallbacks): UpstreamViews;
  /** Start a TCP connect to an IP literal; returns the id (> 0), or a negative libuv error code when
   *  the connect could not start (then no onOpen follows). dialTimeoutMs 0 means none. */
  connect(host: string, port: number, dialTimeoutMs: number, localAddress?: string): number;
  /** Queue raw bytes (the HTTP upgrade request; a string is taken as latin1), written once connected; before
   *  startFraming only. Returns bytes queued or -1. */
  writeRaw(id: number, bytes: Bytes | string): number;
  /** Switch to RFC 6455: later reads are parsed as server frames. With pingIntervalMs and pongTimeoutMs
   *  (both > 0) the backend is pinged after that long without a byte from it, and reported Unresponsive
   *  when nothing comes within pongTimeoutMs. `early` (the bytes that followed the 101 head in the same
   *  read) is parsed at once; its frames are delivered before this returns. */
  startFraming(id: number, maxMessageSize: number, pingIntervalMs?: number, pongTimeoutMs?: number, early?: Bytes): boolean;
  /** Copy and mask one frame (opcode 1 text, 2 binary; 9/10 ping/pong up to 125 bytes), flushed at
   *  the end of this loop phase. Returns the bytes now queued on the connection, or -1 when the id is
   *  gone, not framing, or closing. */
  sendMessage(id: number, opcode: 1 | 2 | 9 | 10, payload: Bytes): number;
  /** Send a close frame (code 0: no status) and wait for the backend's; onClose reports its answer. */
  sendClose(id: number, code: number, reason?: string | Bytes): boolean;
  /** Stop / restart reading this connection (backpressure); takes effect after the current read. */
  pause(id: number): boolean;
  resume(id: number): boolean;
  /** Close with kind Timeout after `ms` unless cleared (0) or reset; e.g. the handshake timeout. */
  setDeadline(id: number, ms: number): boolean;
  /** Close at once, dropping queued bytes; no onClose follows. */
  destroy(id: number): boolean;
  /** Bytes waiting to be written on this connection, or -1 when the id is gone. */
  queuedBytes(id: number): number;
  stats(): UpstreamStats;
}

/** Why the addon is unavailable (null when it loaded). */
export declare const loadError: Error | null;
declare const upstream: NativeUpstream | null;
export default upstream;
