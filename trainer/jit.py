"""numba for the trainer's kernels: started without the scipy import it does not need here, and a
prefetch hint that numba does not offer.

When numba sets up its CPU target (at the first compilation or cache load of any kernel) it imports
numba.np.arraymath, whose BLAS probe imports scipy.linalg if scipy is installed: 0.2-0.3 s of every
command on this machine, for np.correlate and np.convolve, which no kernel here calls (they then use
numba's own loop). So that module is imported here with scipy.linalg out of reach for the moment, unless
it is imported already (then the probe costs nothing). numba's linear algebra (np.dot, np.linalg) still
finds scipy.linalg when it is compiled, since it checks again then.
"""
from __future__ import annotations

import sys


def _import_arraymath_without_scipy() -> None:
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # importing it raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg"]


_import_arraymath_without_scipy()

from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

__all__ = ["njit", "prefetch"]


@intrinsic
def prefetch(typingctx, arr, index):
    """Ask the CPU to bring the cache line that holds arr[index] (an int for a 1-d array, a tuple of ints
    otherwise) into its caches, for reading: a hint (LLVM's prefetch) that neither waits nor faults."""
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        aryty, indexty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        if isinstance(indexty, types.BaseTuple):
            values, value_types = cgutils.unpack_tuple(builder, args[1], len(indexty)), list(indexty)
        else:
            values, value_types = [args[1]], [indexty]
        index = [context.cast(builder, v, t, types.intp) for v, t in zip(values, value_types)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, index)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen
