/**
 * A DNS server for tests (node:dgram on 127.0.0.1): answers A queries for the names a test gives, by exact
 * name or by suffix (`.svc.cluster.local`), NXDOMAIN for the rest, and records every name asked, so a test
 * can show which names Sluice resolved; `silent` makes it stop answering.
 */
import dgram from 'node:dgram';

export class TestDns {
  /** Name (lowercase) or suffix starting with '.' → IPv4 addresses. */
  readonly records = new Map<string, string[]>();
  readonly asked: string[] = [];
  /** Queries received, answered or not. */
  queries = 0;
  /** True: queries are counted and dropped (a DNS server that stopped answering). */
  silent = false;
  port = 0;
  private readonly socket = dgram.createSocket('udp4');

  async start(): Promise<void> {
    this.socket.on('message', (query, peer) => {
      this.queries++;
      if (!this.silent) this.socket.send(this.answer(query), peer.port, peer.address);
    });
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', () => resolve()));
    this.port = this.socket.address().port;
  }

  private lookup(name: string): string[] | undefined {
    const exact = this.records.get(name);
    if (exact !== undefined) return exact;
    for (const [key, addresses] of this.records) if (key.startsWith('.') && name.endsWith(key)) return addresses;
    return undefined;
  }

  private answer(query: Buffer): Buffer {
    // Question: labels from byte 12 to the zero byte, then QTYPE and QCLASS.
    let at = 12;
    const labels: string[] = [];
    while (query[at]! !== 0) {
      labels.push(query.toString('ascii', at + 1, at + 1 + query[at]!));
      at += query[at]! + 1;
    }
    const questionEnd = at + 5;
    const qtype = query.readUInt16BE(at + 1);
    const name = labels.join('.').toLowerCase();
    this.asked.push(name);
    const found = this.lookup(name);
    const records = found !== undefined && qtype === 1 ? found : [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0); // id
    header.writeUInt16BE(found !== undefined ? 0x8180 : 0x8183, 2); // response, recursion available; NXDOMAIN if unknown
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records.length, 6);
    const answers = records.map((address) => {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // the name, by pointer to the question
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(0, 6); // TTL
      rr.writeUInt16BE(4, 10);
      address.split('.').forEach((octet, i) => (rr[12 + i] = Number(octet)));
      return rr;
    });
    return Buffer.concat([header, query.subarray(12, questionEnd), ...answers]);
  }

  close(): void {
    this.socket.close();
  }
}
