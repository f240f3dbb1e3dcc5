// The change model's per-pixel pass (rust/src/fresh.rs `change_pass`, without
// signatures) and the plain changed-pixel counts (`tile_changes`), in integers
// as the CPU decides them:
// - counts[t]: pixels of tile t whose first three channels' squared distance
//   to the reference is over threshold^2 (gray: |d| > threshold);
// - boxes[t]: the box of the pixels of tile t whose colour differs at all
//   from the reference, or from the shadow where the tile is shadowed.
// The frames are byte arrays read as u32 words (any stride, any offset).
// One invocation per run of up to RUN pixels of one row within one tile: it
// counts on its own and touches the tile's atomics once (five words), and
// only when something differs, so an unchanged frame writes nothing.
// Boxes are kept as maxima so a zeroed buffer means "nothing": x0 and y0 as
// their complement (max of ~x is ~min x), x1 and y1 one past the last.

struct Params {
    width: u32,
    height: u32,
    stride_f: u32,
    stride_r: u32,
    stride_s: u32,
    bpp: u32,       // bytes per pixel: 4 (BGRA), 3 (RGB), 1 (gray)
    tile: u32,
    tiles_x: u32,
    threshold: u32,
    runs: u32,      // runs per tile row: ceil(tile / RUN)
    tiles: u32,     // tiles in all: boxes start at out[tiles]
    boxes: u32,     // 0: counts only (tile_changes)
    words: u32,     // 1: four bytes a pixel and every stride a multiple of 4
}

const RUN: u32 = 16u;

@group(0) @binding(0) var<storage, read> frame: array<u32>;
@group(0) @binding(1) var<storage, read> reference: array<u32>;
@group(0) @binding(2) var<storage, read> shadow: array<u32>;
@group(0) @binding(3) var<storage, read> shadowed: array<u32>;
// counts (tiles words), then boxes (4 words a tile: ~x0, ~y0, x1, y1)
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(5) var<uniform> p: Params;

fn byte_f(i: u32) -> u32 {
    return (frame[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn byte_r(i: u32) -> u32 {
    return (reference[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn byte_s(i: u32) -> u32 {
    return (shadow[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn diff(x: u32, y: u32) -> u32 {
    return select(y - x, x - y, x > y);
}

@compute @workgroup_size(64, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let y = gid.y;
    let tx = gid.x / p.runs;
    if (y >= p.height || tx >= p.tiles_x) {
        return;
    }
    let x0 = tx * p.tile + (gid.x % p.runs) * RUN;
    let x1 = min(min(x0 + RUN, (tx + 1u) * p.tile), p.width);
    if (x0 >= x1) {
        return;
    }
    let t = (y / p.tile) * p.tiles_x + tx;
    let against_shadow = p.boxes != 0u && shadowed[t] != 0u;
    let colours = min(p.bpp, 3u);
    var n = 0u;
    var lo = 0xffffffffu;
    var hi = 0u;
    for (var x = x0; x < x1; x++) {
        let f = y * p.stride_f + x * p.bpp;
        let r = y * p.stride_r + x * p.bpp;
        var far = 0u;
        var differs = false;
        if (p.words != 0u) {
            // Four-byte pixels on word boundaries: one load per frame and pixel.
            let wf = frame[f >> 2u];
            let wr = reference[r >> 2u];
            for (var c = 0u; c < 3u; c++) {
                let d = diff((wf >> (c * 8u)) & 0xffu, (wr >> (c * 8u)) & 0xffu);
                far += d * d;
            }
            differs = ((wf ^ wr) & 0xffffffu) != 0u;
        } else {
            for (var c = 0u; c < colours; c++) {
                let d = diff(byte_f(f + c), byte_r(r + c));
                far += d * d;
                differs = differs || d != 0u;
            }
        }
        n += select(0u, 1u, far > p.threshold * p.threshold); // gray: d^2 > t^2, so |d| > t
        if (against_shadow) {
            let s = y * p.stride_s + x * p.bpp;
            if (p.words != 0u) {
                differs = ((frame[f >> 2u] ^ shadow[s >> 2u]) & 0xffffffu) != 0u;
            } else {
                differs = false;
                for (var c = 0u; c < colours; c++) {
                    differs = differs || byte_f(f + c) != byte_s(s + c);
                }
            }
        }
        if (differs) {
            lo = min(lo, x);
            hi = max(hi, x);
        }
    }
    if (n != 0u) {
        atomicAdd(&out[t], n);
    }
    if (p.boxes != 0u && hi >= lo) {
        let b = p.tiles + 4u * t;
        atomicMax(&out[b], ~lo);
        atomicMax(&out[b + 1u], ~y);
        atomicMax(&out[b + 2u], hi + 1u);
        atomicMax(&out[b + 3u], y + 1u);
    }
}
