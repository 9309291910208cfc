// A fake upstream resolver for kernel tests, run inside the uplink namespace:
//   node dns-upstream.cjs ADDR   → answers A example.test = 192.0.2.80, NXDOMAIN for the rest.
// Prints "ready" once bound on UDP and TCP port 53.
const dgram = require('node:dgram');
const net = require('node:net');
const packet = require('dns-packet');

const addr = process.argv[2];
function answer(buf) {
  const q = packet.decode(buf);
  const name = q.questions[0]?.name?.toLowerCase();
  const known = name === 'example.test';
  return packet.encode({
    id: q.id,
    type: 'response',
    flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (known ? 0 : 3),
    questions: q.questions,
    answers:
      known && q.questions[0].type === 'A'
        ? [{ type: 'A', name: q.questions[0].name, ttl: 60, data: '192.0.2.80' }]
        : [],
  });
}
const udp = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
udp.on('message', (m, r) => udp.send(answer(m), r.port, r.address));
const tcp = net.createServer((c) => {
  let buf = Buffer.alloc(0);
  c.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const len = buf.readUInt16BE(0);
      const out = answer(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
      const hdr = Buffer.alloc(2);
      hdr.writeUInt16BE(out.length);
      c.write(Buffer.concat([hdr, out]));
    }
  });
});
let pending = 2;
const ready = () => --pending === 0 && console.log('ready');
udp.bind(53, addr, ready);
tcp.listen(53, addr, ready);
