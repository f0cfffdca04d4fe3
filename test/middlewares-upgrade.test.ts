/** Traefik's middlewares on WebSocket upgrades: the shared case table of test/helpers/middleware-cases.ts. */
import { runMiddlewareCases, sendUpgrade } from './helpers/middleware-cases.js';

runMiddlewareCases('upgrade', sendUpgrade);
