// blocks: the register blocks the CPU set's kernels accumulate in (compiled in front of
// cpu/conv2d/ and cpu/dense.wgsl, after common.wgsl). lavapipe keeps named vectors and
// matrices in registers, where an array of accumulators made its NIR passes take tens of
// seconds per pipeline and the code slower; so a 16 x 16 block of sums is sixteen named
// 4 x 4 matrices, picked by indices that are constants wherever the helpers are called.

// Block (j, m) of a 16 x 16 tile: rows 4j..4j+3 times columns 4m..4m+3 (for the conv weight
// gradient, input channels times output channels; for dense, the tile's rows or inputs times
// its columns). Which way a matrix is laid out is the kernel's to say.
struct AccW {
    m00: mat4x4<f32>, m01: mat4x4<f32>, m02: mat4x4<f32>, m03: mat4x4<f32>,
    m10: mat4x4<f32>, m11: mat4x4<f32>, m12: mat4x4<f32>, m13: mat4x4<f32>,
    m20: mat4x4<f32>, m21: mat4x4<f32>, m22: mat4x4<f32>, m23: mat4x4<f32>,
    m30: mat4x4<f32>, m31: mat4x4<f32>, m32: mat4x4<f32>, m33: mat4x4<f32>,
}

// j and m are constants wherever this is called: all but one branch fold away.
fn acc_add(acc: ptr<function, AccW>, j: u32, m: u32, v: mat4x4<f32>) {
    if (j == 0u && m == 0u) { (*acc).m00 += v; }
    if (j == 0u && m == 1u) { (*acc).m01 += v; }
    if (j == 0u && m == 2u) { (*acc).m02 += v; }
    if (j == 0u && m == 3u) { (*acc).m03 += v; }
    if (j == 1u && m == 0u) { (*acc).m10 += v; }
    if (j == 1u && m == 1u) { (*acc).m11 += v; }
    if (j == 1u && m == 2u) { (*acc).m12 += v; }
    if (j == 1u && m == 3u) { (*acc).m13 += v; }
    if (j == 2u && m == 0u) { (*acc).m20 += v; }
    if (j == 2u && m == 1u) { (*acc).m21 += v; }
    if (j == 2u && m == 2u) { (*acc).m22 += v; }
    if (j == 2u && m == 3u) { (*acc).m23 += v; }
    if (j == 3u && m == 0u) { (*acc).m30 += v; }
    if (j == 3u && m == 1u) { (*acc).m31 += v; }
    if (j == 3u && m == 2u) { (*acc).m32 += v; }
    if (j == 3u && m == 3u) { (*acc).m33 += v; }
}

fn acc_get(acc: ptr<function, AccW>, j: u32, m: u32) -> mat4x4<f32> {
    if (j == 0u && m == 0u) { return (*acc).m00; }
    if (j == 0u && m == 1u) { return (*acc).m01; }
    if (j == 0u && m == 2u) { return (*acc).m02; }
    if (j == 0u && m == 3u) { return (*acc).m03; }
    if (j == 1u && m == 0u) { return (*acc).m10; }
    if (j == 1u && m == 1u) { return (*acc).m11; }
    if (j == 1u && m == 2u) { return (*acc).m12; }
    if (j == 1u && m == 3u) { return (*acc).m13; }
    if (j == 2u && m == 0u) { return (*acc).m20; }
    if (j == 2u && m == 1u) { return (*acc).m21; }
    if (j == 2u && m == 2u) { return (*acc).m22; }
    if (j == 2u && m == 3u) { return (*acc).m23; }
    if (j == 3u && m == 0u) { return (*acc).m30; }
    if (j == 3u && m == 1u) { return (*acc).m31; }
    if (j == 3u && m == 2u) { return (*acc).m32; }
    if (j == 3u && m == 3u) { return (*acc).m33; }
    return mat4x4<f32>();
}


// The outer product of two vec4s: column l is xq * gq[l].
fn outer(xq: vec4<f32>, gq: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(gq.x * xq, gq.y * xq, gq.z * xq, gq.w * xq);
}
