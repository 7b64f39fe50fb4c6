// An independent verifier of cosign key-based signatures, on sigstore-js (@sigstore/verify):
//
//   node sigstore_verify.mjs MODULES_DIR PUBLIC_KEY_PEM REGISTRY REPOSITORY DIGEST
//
// fetches REPOSITORY:sha256-<hex>.sig from the registry (plain HTTP, e.g. 127.0.0.1:5000), and
// for each layer: fetches the payload blob, checks its sha256 against the layer digest, turns the
// layer into a sigstore bundle (messageSignature: the payload's SHA-256 and the annotation's
// signature; verification material: a public-key hint) and verifies it with a trust root holding
// only the public key (no transparency log, no timestamps: thresholds 0), then checks that the
// payload's docker-manifest-digest is DIGEST. Prints one line per layer; exits 0 when there is at
// least one layer and every layer verifies, 1 otherwise, 2 on usage errors.
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';

const args = process.argv.slice(2);
if (args.length !== 5) {
  console.error('usage: sigstore_verify.mjs MODULES_DIR PUBLIC_KEY_PEM REGISTRY REPOSITORY DIGEST');
  process.exit(2);
}
const [modules, keyFile, registry, repository, digest] = args;
// The packages live in a cache directory, not beside this script.
const require = createRequire(path.join(path.resolve(modules), 'node_modules', 'index.js'));
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');
const { bundleFromJSON } = require('@sigstore/bundle');
const { PublicKeyDetails, TrustedRoot } = require('@sigstore/protobuf-specs');
const fs = require('node:fs');

const KEY_HINT = 'kiln-test-key';
const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';

const publicKeyDer = crypto
  .createPublicKey(fs.readFileSync(keyFile, 'utf8'))
  .export({ type: 'spki', format: 'der' });
const trustMaterial = toTrustMaterial(
  TrustedRoot.fromJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  }),
  { [KEY_HINT]: { rawBytes: publicKeyDer, keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256 } },
);
const verifier = new Verifier(trustMaterial, { tlogThreshold: 0, ctlogThreshold: 0, tsaThreshold: 0 });

async function get(url, accept) {
  const response = await fetch(url, { headers: accept ? { Accept: accept } : {} });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

function verifyLayer(layer, payload) {
  const actual = 'sha256:' + crypto.createHash('sha256').update(payload).digest('hex');
  if (layer.mediaType !== SIMPLE_SIGNING) throw new Error(`layer media type ${layer.mediaType}`);
  if (actual !== layer.digest) throw new Error(`payload is ${actual}, layer says ${layer.digest}`);
  const signature = layer.annotations?.[SIGNATURE_ANNOTATION];
  if (!signature) throw new Error('no signature annotation');
  const bundle = bundleFromJSON({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: { publicKey: { hint: KEY_HINT }, tlogEntries: [] },
    messageSignature: {
      messageDigest: {
        algorithm: 'SHA2_256',
        digest: crypto.createHash('sha256').update(payload).digest('base64'),
      },
      signature,
    },
  });
  verifier.verify(toSignedEntity(bundle, payload));
  const claimed = JSON.parse(payload.toString('utf8')).critical?.image?.['docker-manifest-digest'];
  if (claimed !== digest) throw new Error(`payload is for ${claimed}, not ${digest}`);
}

const base = `http://${registry}/v2/${repository}`;
const tag = digest.replace(':', '-') + '.sig';
let manifest;
try {
  manifest = JSON.parse(
    (await get(`${base}/manifests/${tag}`, 'application/vnd.oci.image.manifest.v1+json')).toString(),
  );
} catch (e) {
  console.log(`no signature manifest ${tag}: ${e.message}`);
  process.exit(1);
}
let failures = 0;
for (const layer of manifest.layers ?? []) {
  try {
    verifyLayer(layer, await get(`${base}/blobs/${layer.digest}`));
    console.log(`verified ${layer.digest}`);
  } catch (e) {
    failures++;
    console.log(`failed ${layer.digest}: ${e.message}`);
  }
}
process.exit(failures === 0 && (manifest.layers ?? []).length > 0 ? 0 : 1);
