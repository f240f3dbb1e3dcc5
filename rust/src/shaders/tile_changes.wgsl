// Changed pixels per tile: a pixel changed when the squared distance of its
// first three channels is over t^2 (gray: |d| > t), in integers, as the CPU
// kernel (rust/src/changes.rs) decides it. One invocation per pixel; the
// frames are byte arrays read as u32 words (any stride, any offset).
struct Params {
    width: u32,
    height: u32,
    stride_a: u32,
    stride_b: u32,
    bpp: u32,       // bytes per pixel: 4 (BGRA), 3 (RGB), 1 (gray)
    tile: u32,
    tiles_x: u32,
    threshold: u32,
}

@group(0) @binding(0) var<storage, read> frame_a: array<u32>;
@group(0) @binding(1) var<storage, read> frame_b: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: Params;

fn byte_a(i: u32) -> u32 {
    return (frame_a[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn byte_b(i: u32) -> u32 {
    return (frame_b[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn diff(x: u32, y: u32) -> u32 {
    return select(y - x, x - y, x > y);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if (x >= p.width || y >= p.height) {
        return;
    }
    let ia = y * p.stride_a + x * p.bpp;
    let ib = y * p.stride_b + x * p.bpp;
    var changed = false;
    if (p.bpp == 1u) {
        changed = diff(byte_a(ia), byte_b(ib)) > p.threshold;
    } else {
        let d0 = diff(byte_a(ia), byte_b(ib));
        let d1 = diff(byte_a(ia + 1u), byte_b(ib + 1u));
        let d2 = diff(byte_a(ia + 2u), byte_b(ib + 2u));
        changed = d0 * d0 + d1 * d1 + d2 * d2 > p.threshold * p.threshold;
    }
    if (changed) {
        atomicAdd(&counts[(y / p.tile) * p.tiles_x + x / p.tile], 1u);
    }
}
