"""One generated section of docs/results.md: the text between `<!-- begin NAME -->` and
`<!-- end NAME -->` is replaced, and the rest of the page (hand-written sections, other reports)
is kept. A page without the markers gets the section appended."""
import math
import os


def replace_section(path, name, text):
    begin, end = f"<!-- begin {name} (generated: do not edit by hand) -->", f"<!-- end {name} -->"
    page = open(path).read() if os.path.exists(path) else "# Results\n"
    block = begin + "\n" + text.rstrip("\n") + "\n" + end
    i, j = page.find(begin), page.find(end)
    if i >= 0 and j > i:
        page = page[:i] + block + page[j + len(end):]
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(page)
    os.replace(tmp, path)


def _betacf(a, b, x):
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a, b, x):
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1.0 - x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def welch_test(xs, ys):
    """Welch's unequal-variance t-test of mean(ys) - mean(xs): (difference, t, df, two-sided p).
    t, df and p are None when a side has fewer than 2 values; with no variance on either side p is
    0.0 for different means and 1.0 for equal ones."""
    na, nb = len(xs), len(ys)
    if na == 0 or nb == 0:
        return None, None, None, None
    ma, mb = sum(xs) / na, sum(ys) / nb
    d = mb - ma
    if min(na, nb) < 2:
        return d, None, None, None
    va = sum((x - ma) ** 2 for x in xs) / (na - 1) / na
    vb = sum((y - mb) ** 2 for y in ys) / (nb - 1) / nb
    if va + vb == 0:
        return d, None, None, (0.0 if d != 0 else 1.0)
    t = d / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va * va / (na - 1)) + (vb * vb / (nb - 1)))
    p = betainc(df / 2.0, 0.5, df / (df + t * t))  # two-sided: P(|T| > |t|) for T ~ t(df)
    return d, t, df, p
