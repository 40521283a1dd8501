/* cuda_runtime.h (emulator shim, tests/emu): everything lives in emu_core.h; __half comes
 * along because the kernel headers include both. */
#pragma once
#include "emu_core.h"
#include "cuda_fp16.h"
