#!/usr/bin/env python3
"""gen_host.py: turn a CUDA kernel header (kernels/*.cuh) into host C++ for the CPU emulator
(tests/emu/README.md).  Two rewrites, nothing else; comments and string literals are left alone,
and line numbers are kept (a #line directive names the original file, so compiler messages and
the emulator's __FILE__:__LINE__ diagnostics point at kernels/*.cuh):

  K<<<grid, block[, smem[, stream]]>>>(args)
      -> ::emu::launch("K", K, grid, block[, smem[, stream]])(args)
     K may be a template-id (attention_mma_kernel<64, 4>); the configuration may span lines.
  extern __shared__ [__align__(N)] T name[];
      -> T *name = ::emu::dynamic_smem_as<T>(N or 0);
  __shared__ [__align__(N)] T a[n][m], b[k];   (static shared memory, one or more declarators)
      -> static char emu_smem_tag_a; T (&a)[n][m] = ::emu::static_smem_as<T[n][m]>(&emu_smem_tag_a, "a"[, N]); ...
     so each variable becomes its own exactly-sized heap block per emulated thread block.

The output must contain neither "<<<" nor "__shared__" outside comments: the script fails
otherwise (a construct it does not know), so the build stops rather than compiling something
wrong.  Usage:
  gen_host.py IN.cuh OUT.cuh       rewrite one header
  gen_host.py --self-test          PASS/FAIL lines on built-in cases, "N passed, M failed"
"""
import re
import sys


def code_mask(src):
    """True for each character that is code (not in a comment or a string/char literal)."""
    mask = [True] * len(src)
    i, n = 0, len(src)
    while i < n:
        if src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            mask[i:j] = [False] * (j - i)
            i = j
        elif src.startswith('/*', i):
            j = src.find('*/', i + 2)
            j = n if j < 0 else j + 2
            mask[i:j] = [False] * (j - i)
            i = j
        elif src[i] in '"\'':
            q, j = src[i], i + 1
            while j < n and src[j] != q:
                j += 2 if src[j] == '\\' else 1
            j = min(j + 1, n)
            mask[i:j] = [False] * (j - i)
            i = j
        else:
            i += 1
    return mask


def find_code(src, mask, needle, start=0):
    i = src.find(needle, start)
    while i >= 0 and not mask[i]:
        i = src.find(needle, i + 1)
    return i


def kernel_expr_start(src, end):
    """Start index of the kernel expression that ends just before src[end] ('<<<')."""
    i = end
    while i > 0 and src[i - 1].isspace():
        i -= 1
    if i > 0 and src[i - 1] == '>':  # template-id: skip the balanced <...>
        depth, i = 0, i - 1
        while i >= 0:
            if src[i] == '>':
                depth += 1
            elif src[i] == '<':
                depth -= 1
                if depth == 0:
                    break
            i -= 1
        if i < 0:
            raise ValueError('unbalanced template arguments before <<<')
    while i > 0 and (src[i - 1].isalnum() or src[i - 1] in '_:'):
        i -= 1
    return i


def rewrite_launches(src):
    out, pos = [], 0
    mask = code_mask(src)
    while True:
        i = find_code(src, mask, '<<<', pos)
        if i < 0:
            break
        j = find_code(src, mask, '>>>', i + 3)
        if j < 0:
            raise ValueError('<<< without >>>')
        k = kernel_expr_start(src, i)
        expr = src[k:i].rstrip()
        if not re.match(r'^[A-Za-z_][\w:]*(<.*>)?$', expr, re.S):
            raise ValueError('cannot parse the kernel before <<<: %r' % expr)
        name = ' '.join(expr.split())
        cfg = src[i + 3:j]
        out.append(src[pos:k])
        out.append('::emu::launch("%s", %s, %s)' % (name, expr, cfg))
        pos = j + 3
    out.append(src[pos:])
    return ''.join(out)


def split_top(s):
    """Split at commas outside brackets/parentheses."""
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([<{':
            depth += 1
        elif ch in ')]>}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    return parts


DECL = re.compile(r'^\s*([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)$')


def rewrite_shared_decl(decl):
    """decl: the text of one declaration after '__shared__' up to (not including) ';'."""
    extern = False
    m = re.match(r'\s*__align__\s*\(\s*([^)]*)\)\s*', decl)
    align = '0'
    if m:
        align, decl = m.group(1).strip(), decl[m.end():]
    parts = split_top(decl)
    first = parts[0].strip()
    # type = everything before the first declarator's name
    m = re.match(r'^(.*?)\b([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)$', first, re.S)
    if not m or not m.group(1).strip():
        raise ValueError('cannot parse __shared__ declaration %r' % decl)
    base = m.group(1).strip()
    decls = [(m.group(2), m.group(3))] + []
    for p in parts[1:]:
        d = DECL.match(p)
        if not d:
            raise ValueError('cannot parse __shared__ declarator %r' % p)
        decls.append((d.group(1), d.group(2)))
    return base, align, decls


def rewrite_shared(src):
    out, pos = [], 0
    mask = code_mask(src)
    while True:
        i = find_code(src, mask, '__shared__', pos)
        if i < 0:
            break
        semi = find_code(src, mask, ';', i)
        if semi < 0:
            raise ValueError('__shared__ without ;')
        # an 'extern' right before?
        pre = src[pos:i]
        m = re.search(r'\bextern\s*$', pre)
        start = pos + m.start() if m else i
        body = src[i + len('__shared__'):semi]
        if '\n' in body:
            raise ValueError('multi-line __shared__ declaration (keep it on one line)')
        base, align, decls = rewrite_shared_decl(body)
        out.append(src[pos:start])
        if m:  # extern __shared__ T name[];
            if len(decls) != 1 or decls[0][1].replace(' ', '') != '[]':
                raise ValueError('extern __shared__ must be one unsized array: %r' % body)
            out.append('%s *%s = ::emu::dynamic_smem_as<%s>(%s)' % (base, decls[0][0], base, align))
        else:
            chunks = []
            for name, dims in decls:
                dims = dims.replace(' ', '')
                ref = '(&%s)%s' % (name, dims) if dims else '&' + name
                chunks.append('static char emu_smem_tag_%s; %s %s = ::emu::static_smem_as<%s%s>('
                              '&emu_smem_tag_%s, "%s"%s)' % (name, base, ref, base, dims, name, name,
                                                             '' if align == '0' else ', ' + align))
            out.append('; '.join(chunks))
        pos = semi
    out.append(src[pos:])
    return ''.join(out)


def rewrite(src, path='<input>'):
    dst = rewrite_shared(rewrite_launches(src))
    mask = code_mask(dst)
    for bad in ('<<<', '>>>', '__shared__'):
        if find_code(dst, mask, bad) >= 0:
            raise ValueError('%s: %s left after the rewrite' % (path, bad))
    if src.count('\n') != dst.count('\n'):
        raise ValueError('%s: line count changed' % path)
    return '#line 1 "%s"\n' % path + dst


CASES = [
    ('plain launch',
     'f<<<g, 256, 0, st>>>(a, b);',
     '::emu::launch("f", f, g, 256, 0, st)(a, b);'),
    ('two-argument configuration',
     'k<<<B, 1>>>(x);',
     '::emu::launch("k", k, B, 1)(x);'),
    ('template-id with a comma, configuration over two lines',
     '    attention_mma_kernel<64, 4><<<grid, 128,\n        smem(T), st>>>(o, q);',
     '    ::emu::launch("attention_mma_kernel<64, 4>", attention_mma_kernel<64, 4>, grid, 128,\n        smem(T), st)(o, q);'),
    ('template-id with a macro argument',
     'kern<VK_ATTN_WARPS><<<grid, 32 * VK_ATTN_WARPS, s, st>>>(o);',
     '::emu::launch("kern<VK_ATTN_WARPS>", kern<VK_ATTN_WARPS>, grid, 32 * VK_ATTN_WARPS, s, st)(o);'),
    ('launch in a comment is left alone',
     '/* k<<<g, b>>>(x) */ // f<<<1, 1>>>()\nint x;',
     '/* k<<<g, b>>>(x) */ // f<<<1, 1>>>()\nint x;'),
    ('extern __shared__ with __align__',
     '    extern __shared__ __align__(128) unsigned char smem[];',
     '    unsigned char *smem = ::emu::dynamic_smem_as<unsigned char>(128);'),
    ('extern __shared__ without alignment',
     'extern __shared__ float sc[];',
     'float *sc = ::emu::dynamic_smem_as<float>(0);'),
    ('static __shared__ array',
     '    __shared__ float red[32];',
     '    static char emu_smem_tag_red; float (&red)[32] = ::emu::static_smem_as<float[32]>(&emu_smem_tag_red, "red");'),
    ('two declarators, two dimensions',
     '__shared__ float As[16][17], Rs[16][17];',
     'static char emu_smem_tag_As; float (&As)[16][17] = ::emu::static_smem_as<float[16][17]>(&emu_smem_tag_As, "As"); '
     'static char emu_smem_tag_Rs; float (&Rs)[16][17] = ::emu::static_smem_as<float[16][17]>(&emu_smem_tag_Rs, "Rs");'),
    ('macro-sized array and a scalar',
     '__shared__ int taken[VK_TOPK_MAX];\n__shared__ float total;',
     'static char emu_smem_tag_taken; int (&taken)[VK_TOPK_MAX] = ::emu::static_smem_as<int[VK_TOPK_MAX]>(&emu_smem_tag_taken, "taken");\n'
     'static char emu_smem_tag_total; float &total = ::emu::static_smem_as<float>(&emu_smem_tag_total, "total");'),
    ('static __shared__ with __align__',
     '__shared__ __align__(32) float tile[256];',
     'static char emu_smem_tag_tile; float (&tile)[256] = ::emu::static_smem_as<float[256]>(&emu_smem_tag_tile, "tile", 32);'),
    ('__shared__ in a comment is left alone',
     '// __shared__ float x[3];\nint y;',
     '// __shared__ float x[3];\nint y;'),
]

BAD = [
    ('unterminated launch', 'k<<<g, b(x);'),
    ('launch of an expression it cannot name', '(*fp)<<<1, 1>>>(x);'),
    ('extern __shared__ with a size', 'extern __shared__ float s[4];'),
]


def self_test():
    p = f = 0
    for name, src, want in CASES:
        try:
            got = rewrite(src).split('\n', 1)[1]
        except ValueError as e:
            got = 'error: %s' % e
        if got == want:
            print('PASS gen_host: %s' % name)
            p += 1
        else:
            print('FAIL gen_host: %s\n  got:  %r\n  want: %r' % (name, got, want))
            f += 1
    for name, src in BAD:
        try:
            rewrite(src)
            print('FAIL gen_host: %s was accepted' % name)
            f += 1
        except ValueError as e:
            print('PASS gen_host: %s rejected (%s)' % (name, e))
            p += 1
    print('%d passed, %d failed' % (p, f))
    return 1 if f else 0


def main(argv):
    if len(argv) == 2 and argv[1] == '--self-test':
        return self_test()
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as fh:
        src = fh.read()
    try:
        dst = rewrite(src, argv[1])
    except ValueError as e:
        sys.stderr.write('gen_host.py: %s: %s\n' % (argv[1], e))
        return 1
    with open(argv[2], 'w') as fh:
        fh.write(dst)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
