"""The matmul peaks and one encoder convolution in TensorFlow, the official code's engine.

Run in a separate environment (``pip install tensorflow-cpu``; Reverie does not depend on
TensorFlow), from the repository root: ``python -m benchmarks.tf_peaks``. Compares with ``benchmarks.peaks``: if both engines reach the same kernel
speed, a FLOP count bounds every implementation of the update on this machine alike.
"""

import time


def best_seconds(fn, repeats: int = 5) -> float:
    fn().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn().numpy()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    import tensorflow as tf

    print("tensorflow", tf.__version__)
    for dtype in (tf.float32, tf.bfloat16):
        for size in (2048, 4096):
            a = tf.cast(tf.random.normal((size, size)), dtype)
            b = tf.identity(a)
            seconds = best_seconds(tf.function(lambda a=a, b=b: tf.matmul(a, b)))
            print(f"{dtype.name} matmul {size}: {2 * size**3 / seconds / 1e9:.0f} GFLOP/s")
    x, w = tf.random.normal((500, 31, 31, 48)), tf.random.normal((4, 4, 48, 96))  # NHWC, the atari conv 2
    seconds = best_seconds(tf.function(lambda: tf.nn.conv2d(x, w, 2, "VALID")), 3)
    print(f"float32 conv 48->96 k4 @31, batch 500, forward: {2 * 500 * 14 * 14 * 96 * 48 * 16 / seconds / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
