/** Traefik's middlewares on plain HTTP requests: the shared case table of test/helpers/middleware-cases.ts. */
import { runMiddlewareCases, sendHttp } from './helpers/middleware-cases.js';

runMiddlewareCases('http', sendHttp);
