/**
 * The REST API's shapes under the names the pages use. Every one is the server's schema, taken from
 * `schema.d.ts`, which `scripts/gen-api-types` generates from the backend's OpenAPI: a backend change
 * regenerates it, and `npm run typecheck` then points at every usage the change broke. Write no copy
 * of a schema here; what the server's schema leaves loose and the client knows tighter is said next
 * to it, with why.
 */
import type { components } from "./schema";

type Schemas = components["schemas"];
/** A schema by its server-side name, for the shapes only one API module uses: `Schema<"Token">`. */
export type Schema<Name extends keyof Schemas> = Schemas[Name];

export type Role = Schemas["Role"];
export type User = Schemas["UserOut"];
export type Project = Schemas["ProjectOut"];
export type ImageStatus = Schemas["ImageStatus"];
export type ImageInfo = Schemas["ImageOut"];
/** A project member: `role_in_project` null means their global `role` applies there. */
export type Member = Schemas["MemberOut"];
/** A version with its decoder graphs, as the annotate page loads it: the project's active one
 * (GET /api/projects/{id}/model) or any by id (GET /api/model-versions/{id}). */
export type ModelVersion = Schemas["ProjectModelOut"];
/** One click, in the ORIGINAL image frame (pixels, x right, y down); label 1 fg, 0 bg. */
export type Point = Schemas["PromptPoint"];

/** COCO RLE in the compressed form (`counts` a string, `size` [height, width]): what the annotate page
 * encodes, and what the server stores whatever it was sent. The request schema also takes uncompressed
 * counts; this client never sends them. */
export type Rle = Schemas["RleIn"] & { counts: string };

/** A mask as this client saves it: its RLE always compressed. */
export type MaskCreate = Omit<Schemas["MaskCreate"], "rle"> & { rle: Rle };

/** A stored mask. The server's schema declares `rle` as any object; it is always the compressed form. */
export type MaskOut = Omit<Schemas["MaskOut"], "rle"> & { rle: Rle };

/** The image embedding as served by GET /api/images/{id}/embedding (binary, its shape in headers). */
export interface Embedding {
  /** Little-endian, C order, shape 1x256x64x64, encoded as `dtype` (backend/embeddings/encoding.py). */
  data: ArrayBuffer;
  dtype: "float16" | "int8-per-channel";
  /** [h, w] of the original image and of the resized (pre-padding) encoder input. */
  originalSize: [number, number];
  inputSize: [number, number];
  /** The version whose image encoder made it (`X-Model-Version`): the only one whose decoder fits it. */
  modelVersionId: number;
}
