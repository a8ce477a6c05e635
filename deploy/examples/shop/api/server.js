'use strict';
/*
 * The shop's API: a small HTTP service on node's own http module. Products
 * live in PostgreSQL (the table is created and seeded on start when it is
 * missing), carts in Redis (one hash per cart: sku -> quantity). It is the
 * workload of skiff's quickstart, not a shop: no users, no orders, no auth.
 *
 *   GET    /                      what this is, and its routes
 *   GET    /version               "<version> <host name>", plain text
 *   GET    /health                200 once it reached PostgreSQL and Redis, else 503
 *   GET    /products              every product
 *   GET    /products/:sku         one product
 *   GET    /cart/:id              a cart, with its items and total
 *   POST   /cart/:id/items        {"sku": "tea-green", "quantity": 2} adds to a cart
 *   DELETE /cart/:id/items/:sku   removes an item
 *   DELETE /cart/:id              empties a cart
 *
 * Every answer carries X-Shop-Version and X-Shop-Host (the replica that
 * answered), and every JSON answer the same as "version" and "host".
 *
 * /health: a replica is healthy once it has reached both databases after its
 * start (the products table is ready, Redis answered), so that a version
 * that cannot reach them never gets traffic, and a rolling update to it
 * rolls back. A database lost later does not make it unhealthy: the answers
 * that need that database fail (503, with the reason), the others go on,
 * and /health says "degraded" with the reason, still with a 200. Restarting
 * the API would not bring a database back, and skiff restarts what is
 * unhealthy.
 *
 * On SIGTERM (skiff stops a task after it has left every balancer) it stops
 * accepting connections, answers what still arrives on open connections with
 * "Connection: close", and exits once they are closed (at most
 * SHOP_SHUTDOWN_TIMEOUT_MS), so that a rolling update fails no request.
 *
 * Environment: PORT (3000), DATABASE_URL, DB_PASSWORD_FILE (a file whose
 * first line is PostgreSQL's password, such as the secret
 * /run/secrets/db_pass; it goes into DATABASE_URL), REDIS_URL, SHOP_VERSION
 * (set by the image), SHOP_CONFIG_FILE, CART_TTL_SECONDS (7 days),
 * SHOP_SHUTDOWN_TIMEOUT_MS (10000).
 *
 * SHOP_CONFIG_FILE: a JSON object of settings, such as the config the stack
 * mounts at /etc/shop/api.json: {"cartTtlSeconds": 604800,
 * "shutdownTimeoutMs": 10000}. A variable of the environment wins over it.
 */
const fs = require('fs');
const http = require('http');
const net = require('net');
const os = require('os');
const { Pool } = require('pg');
const Redis = require('ioredis');

const VERSION = process.env.SHOP_VERSION || 'dev';
const HOST = os.hostname();
const CONFIG = readConfig(process.env.SHOP_CONFIG_FILE);
const PORT = intFromEnv('PORT', 3000);
const DATABASE_URL = databaseUrl(process.env.DATABASE_URL || 'postgres://shop:shop@postgres:5432/shop',
  process.env.DB_PASSWORD_FILE);
const REDIS_URL = process.env.REDIS_URL || 'redis://redis:6379';
const CART_TTL_SECONDS = intFromEnv('CART_TTL_SECONDS', setting('cartTtlSeconds', 7 * 24 * 3600));
const SHUTDOWN_TIMEOUT_MS = intFromEnv('SHOP_SHUTDOWN_TIMEOUT_MS', setting('shutdownTimeoutMs', 10000));
const CHECK_TIMEOUT_MS = 2000;
const BODY_MAX = 16 * 1024;

// The catalogue a fresh database starts with: sku, name, price in cents.
const SEED = [
  ['tea-green', 'Green tea, 100 g', 650],
  ['tea-black', 'Assam black tea, 100 g', 590],
  ['mug', 'Stoneware mug', 1200],
  ['kettle', 'Gooseneck kettle', 4900],
  ['strainer', 'Tea strainer', 450],
];

function fail(msg) {
  console.error(`shop-api: ${msg}`);
  process.exit(2);
}

// The settings file: a JSON object, or {} without one.
function readConfig(file) {
  if (!file) return {};
  let c;
  try {
    c = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`SHOP_CONFIG_FILE ${file}: ${err.message}`);
  }
  if (typeof c !== 'object' || c === null || Array.isArray(c)) fail(`SHOP_CONFIG_FILE ${file}: not a JSON object`);
  return c;
}

function setting(key, dflt) {
  const v = CONFIG[key];
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0) fail(`SHOP_CONFIG_FILE: ${key}: not a whole number`);
  return v;
}

// DATABASE_URL with the password of passwordFile (its first line) in it.
function databaseUrl(url, passwordFile) {
  if (!passwordFile) return url;
  let password;
  try {
    password = fs.readFileSync(passwordFile, 'utf8').split(/\r?\n/)[0];
  } catch (err) {
    fail(`DB_PASSWORD_FILE ${passwordFile}: ${err.message}`);
  }
  if (!password) fail(`DB_PASSWORD_FILE ${passwordFile}: empty`);
  try {
    const u = new URL(url);
    u.password = password; // percent-encoded by the setter
    return u.toString();
  } catch (err) {
    fail(`DATABASE_URL: ${err.message}`);
  }
  return url;
}

function intFromEnv(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`shop-api: ${name}=${v}: not a whole number`);
    process.exit(2);
  }
  return n;
}

function log(...args) {
  console.log(new Date().toISOString(), `shop-api ${VERSION} ${HOST}:`, ...args);
}

// ------------------------------------------------------------------ stores

let schemaReady = false; // the products table exists (PostgreSQL was reached)
let redisReadyOnce = false; // Redis answered once since the start
let stopping = false; // SIGTERM came

const pool = new Pool({
  connectionString: DATABASE_URL,
  max: 5,
  connectionTimeoutMillis: 3000,
  idleTimeoutMillis: 30000,
});
// An idle client that loses its server emits here; without a listener node
// would end the process.
pool.on('error', (err) => log('postgres: idle connection lost:', err.message));

const redis = new Redis(REDIS_URL, {
  // Fail a command at once while Redis is away instead of queueing it: the
  // client gets a 503 and /health says why.
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 3000,
});
let lastRedisError = '';
redis.on('error', (err) => {
  if (err.message !== lastRedisError) log('redis:', err.message);
  lastRedisError = err.message;
});
redis.on('ready', () => {
  redisReadyOnce = true;
  if (lastRedisError) log('redis: connected again');
  lastRedisError = '';
});

// Creates the products table and seeds it when it is empty. Replicas start
// together: a transaction-scoped advisory lock makes them do it one at a time.
async function ensureSchema() {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock(7401)');
    await c.query(`CREATE TABLE IF NOT EXISTS products (
        id          serial PRIMARY KEY,
        sku         text UNIQUE NOT NULL,
        name        text NOT NULL,
        price_cents integer NOT NULL CHECK (price_cents >= 0))`);
    const { rowCount } = await c.query('SELECT 1 FROM products LIMIT 1');
    if (rowCount === 0) {
      for (const [sku, name, price] of SEED) {
        await c.query(
          'INSERT INTO products (sku, name, price_cents) VALUES ($1, $2, $3) ' +
            'ON CONFLICT (sku) DO NOTHING',
          [sku, name, price],
        );
      }
      log(`postgres: seeded ${SEED.length} products`);
    }
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    c.release();
  }
}

// Retries until the database is there: the API may start before it.
async function prepare() {
  let last = '';
  while (!stopping) {
    try {
      await ensureSchema();
      schemaReady = true;
      log('postgres: products table ready');
      return;
    } catch (err) {
      if (err.message !== last) log('postgres: not ready yet:', err.message);
      last = err.message;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function checks() {
  const ok = () => 'ok';
  const why = (err) => err.message;
  const [postgres, cache] = await Promise.all([
    withTimeout(pool.query('SELECT 1'), CHECK_TIMEOUT_MS, 'postgres').then(ok, why),
    withTimeout(redis.ping(), CHECK_TIMEOUT_MS, 'redis').then(ok, why),
  ]);
  return { postgres, redis: cache, products: schemaReady ? 'ok' : 'table not ready' };
}

async function productBySku(sku) {
  const { rows } = await pool.query(
    'SELECT id, sku, name, price_cents FROM products WHERE sku = $1',
    [sku],
  );
  return rows[0] || null;
}

async function readCart(id) {
  const raw = await redis.hgetall(cartKey(id));
  const skus = Object.keys(raw).sort();
  const items = [];
  let total = 0;
  if (skus.length > 0) {
    const { rows } = await pool.query(
      'SELECT sku, name, price_cents FROM products WHERE sku = ANY($1)',
      [skus],
    );
    const bySku = new Map(rows.map((r) => [r.sku, r]));
    for (const sku of skus) {
      const p = bySku.get(sku);
      const quantity = Number(raw[sku]);
      if (!p) continue; // a product removed since it was added
      items.push({ sku, name: p.name, price_cents: p.price_cents, quantity });
      total += p.price_cents * quantity;
    }
  }
  return { cart: id, items, total_cents: total };
}

function cartKey(id) {
  return `cart:${id}`;
}

// ------------------------------------------------------------------ HTTP

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function send(res, status, body) {
  const json = typeof body !== 'string';
  const data = json ? JSON.stringify({ version: VERSION, host: HOST, ...body }) + '\n' : body;
  res.writeHead(status, {
    'Content-Type': json ? 'application/json' : 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(data),
  });
  res.end(data);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > BODY_MAX) {
        reject(new HttpError(413, `body over ${BODY_MAX} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        const v = JSON.parse(text);
        if (v === null || typeof v !== 'object' || Array.isArray(v)) {
          return reject(new HttpError(400, 'the body must be a JSON object'));
        }
        resolve(v);
      } catch (err) {
        reject(new HttpError(400, `the body is not JSON: ${err.message}`));
      }
    });
    req.on('error', reject);
  });
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

function checkId(what, v) {
  if (!ID_RE.test(v)) throw new HttpError(400, `${what}: 1 to 64 letters, digits, '-' or '_'`);
  return v;
}

// The routes: [method, path (":name" is a parameter), handler(req, res, params)].
const ROUTES = [
  ['GET', '/', async (req, res) => {
    send(res, 200, { service: 'shop-api', routes: ROUTES.map(([m, p]) => `${m} ${p}`) });
  }],
  ['GET', '/version', async (req, res) => {
    send(res, 200, `${VERSION} ${HOST}\n`);
  }],
  ['GET', '/health', async (req, res) => {
    const c = await checks();
    const ready = schemaReady && redisReadyOnce;
    const allOk = Object.values(c).every((v) => v === 'ok');
    const status = !ready ? 'starting' : allOk ? 'ok' : 'degraded';
    send(res, ready ? 200 : 503, { status, ...c });
  }],
  ['GET', '/products', async (req, res) => {
    const { rows } = await pool.query('SELECT id, sku, name, price_cents FROM products ORDER BY id');
    send(res, 200, { products: rows });
  }],
  ['GET', '/products/:sku', async (req, res, [sku]) => {
    const p = await productBySku(checkId('sku', sku));
    if (!p) throw new HttpError(404, `no product ${sku}`);
    send(res, 200, { product: p });
  }],
  ['GET', '/cart/:id', async (req, res, [id]) => {
    send(res, 200, await readCart(checkId('cart id', id)));
  }],
  ['POST', '/cart/:id/items', async (req, res, [id]) => {
    checkId('cart id', id);
    const body = await readJson(req);
    const quantity = body.quantity === undefined ? 1 : body.quantity;
    if (typeof body.sku !== 'string') throw new HttpError(400, 'sku: a string is required');
    if (!Number.isInteger(quantity) || quantity < 1 || quantity > 1000) {
      throw new HttpError(400, 'quantity: a whole number from 1 to 1000');
    }
    const p = await productBySku(checkId('sku', body.sku));
    if (!p) throw new HttpError(404, `no product ${body.sku}`);
    await redis.multi()
      .hincrby(cartKey(id), p.sku, quantity)
      .expire(cartKey(id), CART_TTL_SECONDS)
      .exec();
    send(res, 200, await readCart(id));
  }],
  ['DELETE', '/cart/:id/items/:sku', async (req, res, [id, sku]) => {
    await redis.hdel(cartKey(checkId('cart id', id)), checkId('sku', sku));
    send(res, 200, await readCart(id));
  }],
  ['DELETE', '/cart/:id', async (req, res, [id]) => {
    await redis.del(cartKey(checkId('cart id', id)));
    send(res, 200, await readCart(id));
  }],
];
const MATCHERS = ROUTES.map(([method, path, fn]) =>
  [method, new RegExp(`^${path.replace(/:[a-z]+/g, '([^/]+)')}$`), fn]);

// A failure of a store is the client's 503, with the store's reason.
function errorStatus(err) {
  if (err instanceof HttpError) return err.status;
  if (err instanceof URIError) return 400; // a bad %-escape in the path
  return 503;
}

async function handle(req, res) {
  res.setHeader('X-Shop-Version', VERSION);
  res.setHeader('X-Shop-Host', HOST);
  if (stopping) res.setHeader('Connection', 'close');
  const path = (req.url || '/').split('?')[0];
  let allowed = [];
  try {
    for (const [method, re, fn] of MATCHERS) {
      const m = re.exec(path);
      if (!m) continue;
      if (method !== req.method) {
        allowed.push(method);
        continue;
      }
      await fn(req, res, m.slice(1).map(decodeURIComponent));
      return;
    }
    if (allowed.length > 0) {
      res.setHeader('Allow', allowed.join(', '));
      throw new HttpError(405, `${req.method} is not allowed here (${allowed.join(', ')})`);
    }
    throw new HttpError(404, `no route for ${req.method} ${path}`);
  } catch (err) {
    const status = errorStatus(err);
    if (status >= 500) log(`${req.method} ${path}: ${err.message}`);
    if (!res.headersSent) send(res, status, { error: err.message });
    else res.destroy();
  }
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    log('unexpected:', err.stack || err);
    res.destroy();
  });
});

// Stops accepting (net.Server's close: http.Server's would also cut the idle
// keep-alive connections at once, racing with a request the client is
// sending on one), tells clients on open connections to go elsewhere, closes
// what is still idle after a moment, and exits when every connection is gone.
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping (no new connections; open ones get "Connection: close")`);
  let finished = false;
  const done = (why) => {
    if (finished) return;
    finished = true;
    log(`stopped: ${why}`);
    Promise.allSettled([pool.end(), redis.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  net.Server.prototype.close.call(server, () => done('every connection closed'));
  setTimeout(() => server.closeIdleConnections && server.closeIdleConnections(), 1000).unref();
  setTimeout(() => {
    if (server.closeAllConnections) server.closeAllConnections();
    done(`connections still open after ${SHUTDOWN_TIMEOUT_MS} ms were closed`);
  }, SHUTDOWN_TIMEOUT_MS).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.keepAliveTimeout = 5000;
server.listen(PORT, '0.0.0.0', () => {
  log(`listening on :${PORT} (node ${process.version}, postgres ${redact(DATABASE_URL)}, ` +
      `redis ${redact(REDIS_URL)})`);
  prepare();
});

// A URL without its password, for the log.
function redact(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch (err) {
    return '(unparsable URL)';
  }
}
