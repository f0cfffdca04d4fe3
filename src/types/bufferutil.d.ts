// Types for bufferutil (the native WebSocket masking helper the `ws` project maintains); it ships none.
declare module 'bufferutil' {
  export function mask(source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number): void;
  export function unmask(buffer: Uint8Array, mask: Uint8Array): void;
  const bufferUtil: { mask: typeof mask; unmask: typeof unmask };
  export default bufferUtil;
}
