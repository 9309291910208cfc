import { main } from './main.js';

// Exit only once stdout and stderr are flushed: a large `--json` document on a pipe is
// written asynchronously, and process.exit() would cut it.
main(process.argv).then((code) => {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
});
