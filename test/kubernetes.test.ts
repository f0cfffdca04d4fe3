/**
 * The Kubernetes manifests (config/kubernetes): each setup (the base, overlays/plain, overlays/tls) is
 * rendered with `kubectl kustomize` (no cluster needed; KUBECTL names another binary), every object is
 * checked against the Kubernetes API schemas offline (kubernetes-models and its CRD siblings, plus a check
 * for fields no schema knows, which the schemas themselves let through), and the objects are checked
 * against each other and against the Sluice config in the ConfigMap: ports, probe paths, the mount, the
 * drain timing, DNS discovery through the NetworkPolicy. The config passes `sluice validate` with the
 * files the pod mounts beside it, and the base config runs and answers the probes and the autoscaler's
 * metric.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';

import { loadConfigFile } from '../src/config/load.js';
import type { Snapshot } from '../src/config/snapshot.js';
import { get, parsePrometheus } from './helpers/admin.js';
import { CertificateFactory } from './helpers/certificates.js';
import { runSluiceCommand } from './helpers/cli.js';
import { REPO, startSluice } from './helpers/sluice.js';

const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const K8S = path.join(REPO, 'config/kubernetes');

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered manifests are untyped YAML; the schema check types them */
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string> };

/** The schema of each kind the manifests use; a kind missing here fails the test instead of going unchecked. */
const MODELS: Readonly<Record<string, { prototype: { validate(): void } }>> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'cert-manager.io/v1/Certificate': Certificate,
};

/**
 * Problems of one object: the schema's errors, then every field the schema's validator never looked at.
 * The Kubernetes schemas allow unknown fields (the API server drops them, or refuses them with strict
 * validation), so a misspelt `livenesProbe` would pass unnoticed; the generated validators read every
 * property they know, so a field never read is one no schema declares.
 */
function schemaProblems(object: Obj): string[] {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (model === undefined) return [`no schema for ${object.apiVersion} ${object.kind}`];
  const read = new Set<string>();
  try {
    model.prototype.validate.call(tracked(object, '', read));
  } catch (error) {
    return [(error as Error).message];
  }
  return unread(object, '', read);
}

function tracked(value: unknown, at: string, read: Set<string>): unknown {
  if (value === null || typeof value !== 'object') return value;
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key !== 'string' || !Object.hasOwn(target, key)) return Reflect.get(target, key, receiver);
      read.add(`${at}/${key}`);
      return tracked(Reflect.get(target, key, receiver), `${at}/${key}`, read);
    },
    // Maps (labels, resources.limits, ConfigMap data) are walked key by key: each key counts as read.
    ownKeys(target) {
      const keys = Reflect.ownKeys(target);
      for (const key of keys) if (typeof key === 'string') read.add(`${at}/${key}`);
      return keys;
    },
  });
}

function unread(value: unknown, at: string, read: Set<string>): string[] {
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, item]) =>
    read.has(`${at}/${key}`) ? unread(item, `${at}/${key}`, read) : [`${at}/${key}: unknown field`],
  );
}

function render(dir: string): Obj[] {
  let out: string;
  try {
    out = execFileSync(KUBECTL, ['kustomize', path.join(K8S, dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`${KUBECTL} not found: install kubectl (.ci/run installs Debian's kubernetes-client)`);
    throw new Error(`${KUBECTL} kustomize ${dir} failed:\n${e.stderr ?? e.message}`);
  }
  return parseAllDocuments(out).map((doc) => doc.toJS() as Obj).filter((o) => o !== null);
}

function find(objects: readonly Obj[], kind: string, name: string): Obj {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `no ${kind} ${name} in the rendering`);
  return found;
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** A container's port number for a port given by name or number. */
function containerPort(container: any, port: string | number): number | undefined {
  if (typeof port === 'number') return (container.ports ?? []).some((p: any) => p.containerPort === port) ? port : undefined;
  return (container.ports ?? []).find((p: any) => p.name === port)?.containerPort;
}

function argAfter(args: readonly string[], flag: string): string {
  const i = args.indexOf(flag);
  assert.ok(i >= 0 && i + 1 < args.length, `no ${flag} in ${args.join(' ')}`);
  return args[i + 1]!;
}

interface Setup {
  readonly name: string;
  readonly dir: string;
  readonly namespace?: string;
  readonly tls: boolean;
}

const SETUPS: readonly Setup[] = [
  { name: 'the base (kubectl apply -k config/kubernetes)', dir: '.', tls: false },
  { name: 'overlays/plain', dir: 'overlays/plain', namespace: 'sluice', tls: false },
  { name: 'overlays/tls', dir: 'overlays/tls', namespace: 'sluice', tls: true },
];

let certificates: CertificateFactory;
before(() => {
  certificates = new CertificateFactory();
});
after(() => certificates.remove());

for (const setup of SETUPS) {
  describe(`Kubernetes: ${setup.name}`, () => {
    let objects: Obj[] = [];
    let deployment: Obj;
    let pod: any;
    let sluice: any;
    let configPath = '';
    let configDir = '';
    let snapshot: Snapshot;

    before(() => {
      objects = render(setup.dir);
      deployment = find(objects, 'Deployment', 'sluice');
      pod = deployment.spec.template;
      sluice = pod.spec.containers.find((c: any) => c.name === 'sluice');
      configPath = argAfter(sluice.args, '--config');
      configDir = mountedDirectory(objects, pod, sluice, path.posix.dirname(configPath));
      snapshot = loadConfigFile(path.join(configDir, path.posix.basename(configPath)));
    });
    after(() => rmSync(configDir, { recursive: true, force: true }));

    test('every object passes the Kubernetes API schema and has no field the schema does not know', () => {
      assert.ok(objects.length >= 10, `only ${objects.length} objects rendered`);
      const problems = objects.flatMap((o) => schemaProblems(o).map((p) => `${o.kind} ${o.metadata.name}: ${p}`));
      assert.deepEqual(problems, []);
      if (setup.namespace !== undefined) {
        const stray = objects.filter((o) => o.kind !== 'Namespace' && o.metadata.namespace !== setup.namespace);
        assert.deepEqual(stray.map((o) => `${o.kind} ${o.metadata.name}`), []);
      }
    });

    test('the mounted config passes sluice validate, with the files the pod mounts beside it', async () => {
      const result = await runSluiceCommand(['validate', path.join(configDir, path.posix.basename(configPath))]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /: ok \(/);
    });

    test('the config is a whole directory mounted read-only, so a ConfigMap change reaches the watched file', () => {
      const mount = sluice.volumeMounts.find((m: any) => m.mountPath === path.posix.dirname(configPath));
      assert.ok(mount, `nothing mounted at ${path.posix.dirname(configPath)}`);
      assert.equal(mount.subPath, undefined, 'a subPath mount never sees kubelet update the ConfigMap');
      assert.equal(mount.readOnly, true);
      // A fixed name: a hash suffix would make every config change a rollout instead of a reload.
      find(objects, 'ConfigMap', 'sluice-config');
    });

    test('container ports, probes and Services agree with the entry points and admin address of the config', () => {
      const listening = new Set([...snapshot.entryPoints.map((ep) => ep.port), snapshot.admin.port]);
      assert.deepEqual(new Set(sluice.ports.map((p: any) => p.containerPort)), listening);
      for (const [probe, probePath] of [['readinessProbe', '/ready'], ['livenessProbe', '/health']] as const) {
        assert.equal(sluice[probe].httpGet.path, probePath);
        assert.equal(containerPort(sluice, sluice[probe].httpGet.port), snapshot.admin.port, `${probe} is not on the admin port`);
      }
      const entryPorts = new Set(snapshot.entryPoints.map((ep) => ep.port));
      const front = find(objects, 'Service', 'sluice');
      assert.ok(matches(front.spec.selector, pod.metadata.labels));
      assert.deepEqual(new Set(front.spec.ports.map((p: any) => containerPort(sluice, p.targetPort))), entryPorts);
      const admin = find(objects, 'Service', 'sluice-admin');
      assert.ok(matches(admin.spec.selector, pod.metadata.labels));
      assert.deepEqual(admin.spec.ports.map((p: any) => containerPort(sluice, p.targetPort)), [snapshot.admin.port]);
      const monitor = find(objects, 'ServiceMonitor', 'sluice');
      assert.ok(matches(monitor.spec.selector.matchLabels, admin.metadata.labels), 'the ServiceMonitor does not select the admin Service');
      assert.ok(!matches(monitor.spec.selector.matchLabels, front.metadata.labels), 'the ServiceMonitor would scrape the entry points too');
      assert.deepEqual(monitor.spec.endpoints.map((e: any) => [e.port, e.path]), [[admin.spec.ports[0].name, '/metrics']]);
      if (setup.tls) {
        assert.deepEqual(snapshot.entryPoints.map((ep) => ep.tls), [true]);
        assert.deepEqual(front.spec.ports.map((p: any) => p.port), [443]);
      }
    });

    test('a stop drains: preStop pause, then the grace period, all within terminationGracePeriodSeconds', () => {
      const command = sluice.lifecycle.preStop.exec.command as string[];
      assert.equal(command[0], 'sleep');
      const pause = Number(command[1]);
      assert.ok(pause > 0 && pause <= 15, `preStop sleeps ${pause} s`);
      // After SIGTERM an entry point accepts for requestAcceptGraceTimeout, then closes over graceTimeOut.
      const drain = Math.max(...snapshot.entryPoints.map((ep) => ep.lifeCycle.acceptGraceMs + ep.lifeCycle.graceMs)) / 1000;
      assert.ok(drain >= 30, `a drain of ${drain} s would make every client reconnect at about once`);
      const grace = pod.spec.terminationGracePeriodSeconds as number;
      assert.ok(grace > pause + drain, `terminationGracePeriodSeconds ${grace} <= preStop ${pause} s + drain ${drain} s`);
      // Rollouts surge before they drain, and disruptions take one pod at a time.
      assert.deepEqual([deployment.spec.strategy.rollingUpdate.maxSurge, deployment.spec.strategy.rollingUpdate.maxUnavailable], [1, 0]);
      const pdb = find(objects, 'PodDisruptionBudget', 'sluice');
      assert.ok(matches(pdb.spec.selector.matchLabels, pod.metadata.labels));
      assert.equal(pdb.spec.maxUnavailable, 1);
    });

    test('two replicas spread over nodes, non-root, read-only root, memory sized, workers = CPUs', () => {
      assert.equal(deployment.spec.replicas, 2);
      const term = pod.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
      assert.equal(term.topologyKey, 'kubernetes.io/hostname');
      assert.ok(matches(term.labelSelector.matchLabels, pod.metadata.labels));
      assert.equal(pod.spec.securityContext.runAsNonRoot, true);
      assert.ok(pod.spec.securityContext.runAsUser > 0);
      assert.equal(sluice.securityContext.readOnlyRootFilesystem, true);
      assert.equal(sluice.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(sluice.securityContext.capabilities.drop, ['ALL']);
      assert.ok(sluice.resources.limits.memory, 'no memory limit');
      assert.equal(sluice.resources.requests.memory, sluice.resources.limits.memory);
      assert.equal(snapshot.workers, Number(sluice.resources.requests.cpu), 'workers should match the CPUs the pod requests');
    });

    test('scales on websocket_connections_active per pod', () => {
      const hpa = find(objects, 'HorizontalPodAutoscaler', 'sluice');
      assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'sluice' });
      assert.ok(hpa.spec.minReplicas >= 2);
      assert.deepEqual(hpa.spec.metrics.map((m: any) => [m.type, m.pods?.metric.name, m.pods?.target.type]), [['Pods', 'websocket_connections_active', 'AverageValue']]);
    });

    test('backends are found by DNS through a headless Service that the NetworkPolicy lets Sluice reach', () => {
      const policy = find(objects, 'NetworkPolicy', 'sluice');
      assert.ok(matches(policy.spec.podSelector.matchLabels, pod.metadata.labels));
      assert.deepEqual(policy.spec.policyTypes, ['Ingress', 'Egress']);
      // Clients reach every entry point from anywhere; the admin port is open to monitoring only.
      const open = policy.spec.ingress.filter((rule: any) => rule.from === undefined).flatMap((rule: any) => rule.ports.map((p: any) => containerPort(sluice, p.port)));
      assert.deepEqual(new Set(open), new Set(snapshot.entryPoints.map((ep) => ep.port)));
      const restricted = policy.spec.ingress.filter((rule: any) => rule.from !== undefined).flatMap((rule: any) => rule.ports.map((p: any) => containerPort(sluice, p.port)));
      assert.deepEqual(restricted, [snapshot.admin.port]);

      const discovered = snapshot.services.filter((s) => s.discovery !== null);
      assert.ok(discovered.length > 0, 'the config discovers no backend by DNS');
      for (const service of discovered) {
        const backend = snapshot.backends[service.backends[0]!]!;
        const headless = find(objects, 'Service', backend.dnsName);
        assert.equal(headless.spec.clusterIP, 'None', `Service ${backend.dnsName} is not headless`);
        const servicePort = headless.spec.ports.find((p: any) => p.port === backend.port);
        assert.ok(servicePort, `Service ${backend.dnsName} has no port ${backend.port}`);
        const pool = objects.find((o) => o.kind === 'Deployment' && matches(headless.spec.selector, o.spec.template.metadata.labels));
        assert.ok(pool, `no Deployment behind Service ${backend.dnsName}`);
        const podPort = containerPort(pool.spec.template.spec.containers[0], servicePort.targetPort);
        assert.equal(podPort, backend.port, 'discovery connects to the pod addresses on the URL port');
        const allowed = policy.spec.egress.some((rule: any) =>
          rule.to.some((peer: any) => peer.namespaceSelector === undefined && matches(peer.podSelector.matchLabels, pool.spec.template.metadata.labels)) &&
          rule.ports.some((p: any) => p.port === podPort && p.protocol === 'TCP'));
        assert.ok(allowed, `the NetworkPolicy does not let Sluice reach ${backend.dnsName}:${podPort}`);
      }
      const dns = policy.spec.egress.find((rule: any) => rule.ports.some((p: any) => p.port === 53 && p.protocol === 'UDP'));
      assert.ok(dns, 'no DNS egress: discovery could not resolve');
      assert.equal(policy.spec.egress.length, 2, 'egress beyond the backends and DNS');
    });

    if (setup.tls) {
      test("cert-manager's Secret is projected where the config's tls.certificates point", () => {
        const certificate = find(objects, 'Certificate', 'sluice-tls');
        const volume = pod.spec.volumes.find((v: any) => v.projected?.sources.some((s: any) => s.secret?.name === certificate.spec.secretName));
        assert.ok(volume, `Secret ${certificate.spec.secretName} is not mounted`);
        const mount = sluice.volumeMounts.find((m: any) => m.name === volume.name);
        const items = volume.projected.sources.find((s: any) => s.secret).secret.items.map((i: any) => path.posix.join(mount.mountPath, i.path));
        const files = snapshot.certificates.flatMap((c) => [c.certFile, c.keyFile]).map((f) => path.posix.join(mount.mountPath, path.relative(configDir, f)));
        assert.deepEqual(new Set(files), new Set(items));
        assert.ok(certificate.spec.dnsNames.length > 0);
      });
    }
  });
}

/**
 * A temp directory laid out as the pod sees `mountPath`: the ConfigMap's keys, and for a Secret (the TLS
 * overlay's) a fresh certificate and key at the paths its items name.
 */
function mountedDirectory(objects: readonly Obj[], pod: any, container: any, mountPath: string): string {
  const mount = container.volumeMounts.find((m: any) => m.mountPath === mountPath);
  assert.ok(mount, `nothing is mounted at ${mountPath}`);
  const volume = pod.spec.volumes.find((v: any) => v.name === mount.name);
  const sources: any[] = volume.projected?.sources ?? [volume];
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-k8s-'));
  for (const source of sources) {
    if (source.configMap !== undefined) {
      const configMap = find(objects, 'ConfigMap', source.configMap.name);
      for (const [key, text] of Object.entries(configMap.data ?? {})) writeFileSync(path.join(dir, key), text);
    } else if (source.secret !== undefined) {
      const files = certificates.selfSigned(source.secret.name, 'ws.example.com', ['DNS:ws.example.com']);
      for (const item of source.secret.items) {
        mkdirSync(path.join(dir, path.dirname(item.path)), { recursive: true });
        copyFileSync(item.key === 'tls.key' ? files.keyFile : files.certFile, path.join(dir, item.path));
      }
    }
  }
  return dir;
}

describe('Kubernetes: the offline schema check', () => {
  test('catches a wrong type, a missing required field and a misspelt field, in core kinds and CRDs', () => {
    const objects = render('overlays/tls');
    const deployment = structuredClone(find(objects, 'Deployment', 'sluice'));
    const container = deployment.spec.template.spec.containers[0];
    container.ports[0].containerPort = '8080';
    container.livenesProbe = container.livenessProbe;
    assert.deepEqual(schemaProblems(deployment), ['data/spec/template/spec/containers/0/ports/0/containerPort must be integer']);
    delete container.livenesProbe;
    container.ports[0].containerPort = 8080;
    container.livenesProbe = {};
    assert.deepEqual(schemaProblems(deployment), ['/spec/template/spec/containers/0/livenesProbe: unknown field']);
    const monitor = structuredClone(find(objects, 'ServiceMonitor', 'sluice'));
    monitor.spec.endpoints[0].intervall = '15s';
    assert.deepEqual(schemaProblems(monitor), ['/spec/endpoints/0/intervall: unknown field']);
    const certificate = structuredClone(find(objects, 'Certificate', 'sluice-tls'));
    delete certificate.spec.secretName;
    assert.match(schemaProblems(certificate).join(), /secretName/);
    assert.deepEqual(schemaProblems({ ...certificate, kind: 'Issuer' }), ['no schema for cert-manager.io/v1 Issuer']);
  });
});

describe('Kubernetes: the Prometheus Adapter rule', () => {
  test('serves the metric the autoscaler asks for, summed per pod', () => {
    const values = parseYaml(readFileSync(path.join(K8S, 'prometheus-adapter-values.yaml'), 'utf8'));
    const hpa = find(render('.'), 'HorizontalPodAutoscaler', 'sluice');
    const wanted = hpa.spec.metrics[0].pods.metric.name as string;
    const rule = values.rules.custom.find((r: any) => new RegExp(r.name.matches).test(wanted));
    assert.ok(rule, `no adapter rule for ${wanted}`);
    assert.equal(rule.name.as, wanted);
    assert.match(rule.seriesQuery, new RegExp(`^${wanted}\\{`));
    assert.deepEqual(rule.resources.overrides.pod, { resource: 'pod' });
    assert.match(rule.metricsQuery, /^sum\(.*\) by \(<<\.GroupBy>>\)$/);
  });
});

describe('Kubernetes: the base config runs', () => {
  test('it answers the probes and exports the metric the autoscaler reads', async () => {
    const configMap = find(render('.'), 'ConfigMap', 'sluice-config');
    // The ports become free ones (tests share this machine); everything else is the ConfigMap's.
    const text = configMap.data!['sluice.yaml']!;
    const config = text.replace('":8080"', '"127.0.0.1:{PORT}"').replace('":9090"', '"127.0.0.1:{ADMIN_PORT}"');
    assert.equal(config.match(/\{(ADMIN_)?PORT\}/g)?.length, 2, 'the config no longer listens on :8080 and :9090');
    const proxy = await startSluice(config, { workers: 1 });
    try {
      assert.equal(await statusWithin(`${proxy.adminUrl}/ready`, 200, 10_000), 200);
      assert.equal((await get(`${proxy.adminUrl}/health`)).status, 200);
      const metrics = parsePrometheus((await get(`${proxy.adminUrl}/metrics`)).text);
      assert.ok(metrics.some((s) => s.name === 'websocket_connections_active'), 'websocket_connections_active is not exported');
    } finally {
      await proxy.stop();
    }
  });
});

/** Polls `url` until it answers `status` (or the time is up); returns the last status seen (-1: no answer). */
async function statusWithin(url: string, status: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  while (Date.now() < deadline) {
    last = await get(url).then((a) => a.status, () => -1);
    if (last === status) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return last;
}
