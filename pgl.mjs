import { PGlite } from '@electric-sql/pglite';
let t=Date.now(); const a = new PGlite(); await a.waitReady; console.log('memory init', Date.now()-t);
t=Date.now(); const b = new PGlite(); await b.waitReady; console.log('2nd memory init', Date.now()-t);
t=Date.now(); const dump = await a.dumpDataDir('none'); console.log('dump', Date.now()-t, dump.size);
t=Date.now(); const c = new PGlite({loadDataDir: dump}); await c.waitReady; console.log('load from dump', Date.now()-t);
