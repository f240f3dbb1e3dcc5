// The luma histogram (rust/src/kernels.rs `luma_histogram`): 256 counts of
// (77 R + 150 G + 29 B) >> 8 (gray: the value), in integers as the CPU
// computes it. Each invocation takes a run of up to RUN pixels of one row into
// its workgroup's histogram; the workgroup then adds its 256 bins to the
// frame's, one bin per invocation, so the frame's atomics see 256 adds per
// workgroup instead of one per pixel.

struct Params {
    width: u32,
    height: u32,
    stride: u32,
    bpp: u32,
    runs: u32,    // runs per row: ceil(width / RUN)
}

const RUN: u32 = 16u;

@group(0) @binding(0) var<storage, read> frame: array<u32>;
@group(0) @binding(1) var<storage, read_write> bins: array<atomic<u32>, 256>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> local: array<atomic<u32>, 256>;

fn byte_f(i: u32) -> u32 {
    return (frame[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

@compute @workgroup_size(64, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let y = gid.y;
    let x0 = gid.x * RUN;
    // No early return: every invocation reaches the barriers.
    if (y < p.height && gid.x < p.runs) {
        let x1 = min(x0 + RUN, p.width);
        for (var x = x0; x < x1; x++) {
            let i = y * p.stride + x * p.bpp;
            var l = 0u;
            if (p.bpp == 1u) {
                l = byte_f(i);
            } else if (p.bpp == 4u) {
                l = (77u * byte_f(i + 2u) + 150u * byte_f(i + 1u) + 29u * byte_f(i)) >> 8u;
            } else {
                l = (77u * byte_f(i) + 150u * byte_f(i + 1u) + 29u * byte_f(i + 2u)) >> 8u;
            }
            atomicAdd(&local[l], 1u);
        }
    }
    workgroupBarrier();
    let n = atomicLoad(&local[li]);
    if (n != 0u) {
        atomicAdd(&bins[li], n);
    }
}
