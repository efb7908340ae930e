// A Node.js caller of fashionrag, as another team's service would be: it loads protos/ at run
// time with @grpc/proto-loader, calls both services with @grpc/grpc-js and prints one JSON
// object for tests/interop/test_node_client.py to check.
//
//   node tests/interop/client.mjs EMBEDDER_ADDRESS QUERY_ADDRESS GOOGLEAPIS_PROTO_DIR
//
// GOOGLEAPIS_PROTO_DIR holds google/rpc/status.proto and error_details.proto, with which the
// failed call's google.rpc.Status details (the grpc-status-details-bin trailer) are decoded.

import path from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const PROTOS = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "protos");
const DEADLINE_MS = 60_000;

const [embedderAddress, queryAddress, googleapisDir] = process.argv.slice(2);
if (!googleapisDir) {
  console.error("usage: node client.mjs EMBEDDER_ADDRESS QUERY_ADDRESS GOOGLEAPIS_PROTO_DIR");
  process.exit(2);
}

const definition = protoLoader.loadSync(
  ["fashionrag/v1/embedder.proto", "fashionrag/v1/query.proto"],
  {
    includeDirs: [PROTOS],
    keepCase: true, // field names as the .proto spells them: top_k, model_name
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  },
);
const { fashionrag } = grpc.loadPackageDefinition(definition);
const credentials = grpc.credentials.createInsecure();
const embedder = new fashionrag.v1.EmbedderService(embedderAddress, credentials);
const query = new fashionrag.v1.QueryService(queryAddress, credentials);

/** One unary call as a promise: the response, or the error with its code and trailers. */
function call(client, method, request) {
  const deadline = Date.now() + DEADLINE_MS;
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** The google.rpc.Status of a failed call, its details unpacked (ErrorInfo, BadRequest). */
function richStatus(error) {
  const [bytes] = error.metadata.get("grpc-status-details-bin");
  if (!bytes) return null;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(googleapisDir, target);
  root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], {
    keepCase: true,
  });
  const status = root.lookupType("google.rpc.Status").decode(bytes);
  const details = status.details.map((any) => {
    const type = root.lookupType(any.type_url.split("/").pop());
    return { type: type.fullName.replace(/^\./, ""), ...type.toObject(type.decode(any.value)) };
  });
  return { code: status.code, message: status.message, details };
}

const texts = ["red tops", "a long blue summer dress"];
const embedded = await call(embedder, "EmbedTexts", { texts });
const { model } = await call(embedder, "GetModelInfo", {});
const found = await call(query, "Search", { text: "a person in the street", top_k: 5 });
let refused = null;
try {
  await call(query, "Search", { text: "red tops", categories: ["spaceship"] });
} catch (error) {
  refused = {
    code: error.code,
    code_name: grpc.status[error.code],
    message: error.details,
    status: richStatus(error),
  };
}
embedder.close();
query.close();

console.log(
  JSON.stringify({
    embed: {
      count: embedded.results.length,
      lengths: embedded.results.map((r) => r.embedding.values.length),
      norms: embedded.results.map((r) => Math.hypot(...r.embedding.values)),
    },
    model,
    search: {
      query: found.query,
      grain: found.grain,
      results: found.results.map(({ rank, id, path: file, distance }) => ({
        rank,
        id,
        path: file,
        distance,
      })),
    },
    refused,
  }),
);
