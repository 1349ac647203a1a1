#!/usr/bin/env python3
"""Per-batch cost of iterating a Loader in Python over iterating the same loader in C.

Compiles a tiny C consumer against the built library, packs a small token dataset, then runs, on
the same data and parameters, best of --repeat: C (next/release, touching each batch's tensor
pointer) and Python (for batch in loader: batch[field] -> numpy.asarray). Prints microseconds
per batch for both, their difference (the Python overhead) and the throughput ratio.
    /usr/bin/python3 bench/python_overhead.py --build build [--samples 20000 --batch-size 8]
With --dataset PATH --field image, an existing dataset (e.g. a packed ImageFolder) is used instead
of the generated token set; its image fields are decoded with the default train transform.
"""
import argparse, json, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C_SRC = r'''
#include <shardpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  sp_params*p=sp_params_create();
  for(int i=3;i+1<argc;i+=2) if(sp_params_set_str(p,argv[i],argv[i+1])){fprintf(stderr,"%s\n",sp_last_error());return 2;}
  sp_loader*l; if(sp_loader_open(argv[1],p,&l)){fprintf(stderr,"%s\n",sp_last_error());return 1;}
  sp_batch*b; int rc; unsigned long n=0; volatile uintptr_t sink=0; double t0=now();
  while((rc=sp_loader_next(l,&b,-1))!=SP_EDONE){ if(rc==SP_EEPOCH) continue; if(rc) return 1;
    sink+=(uintptr_t)sp_batch_tensor(b,sp_batch_find(b,argv[2]))->data; n++; sp_loader_release(l,b);}
  printf("%lu %.9f\n",n,now()-t0); sp_loader_close(l); sp_params_destroy(p); return 0;}
'''

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--seq", type=int, default=65)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dataset", help="an existing dataset instead of the generated tokens")
    ap.add_argument("--field", default="tokens", help="the field both consumers touch")
    a = ap.parse_args()
    libdir = os.path.join(a.build, "lib")
    os.environ.setdefault("SHARDPACK_LIBRARY", os.path.join(libdir, "libshardpack.so"))
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import numpy, shardpack
    tmp = tempfile.mkdtemp(prefix="sp-pybench-")
    exe = os.path.join(tmp, "c_iter")
    with open(exe + ".c", "w") as f:
        f.write(C_SRC)
    subprocess.run(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-I", os.path.join(ROOT, "include"),
                    exe + ".c", "-o", exe, "-L", libdir, "-lshardpack", "-Wl,-rpath," + libdir], check=True)
    ds = a.dataset or os.path.join(tmp, "tok.sp")
    if not a.dataset:
        rng = numpy.random.default_rng(0)
        with shardpack.Writer(ds, [("tokens", "tokens", "uint16", (a.seq,))]) as w:
            for row in rng.integers(0, 50257, size=(a.samples, a.seq), dtype=numpy.uint16):
                w.add(row)
    params = dict(batch_size=a.batch_size, epochs=a.epochs, threads=a.threads, seed=1)
    cargs = [x for k, v in params.items() for x in (k, str(v))]
    c_best = py_best = None
    for _ in range(a.repeat):
        n, s = subprocess.run([exe, ds, a.field] + cargs, check=True, capture_output=True, text=True).stdout.split()
        c = float(s) / int(n)
        with shardpack.Loader(ds, **params) as l:
            m, t0 = 0, time.perf_counter()
            while not l.done:
                for b in l:
                    numpy.asarray(b[a.field]); m += 1
            py = (time.perf_counter() - t0) / m
        assert m == int(n), (m, n)
        c_best = c if c_best is None else min(c_best, c)
        py_best = py if py_best is None else min(py_best, py)
    res = {"batches": int(n), "batch_size": a.batch_size, "c_us_per_batch": c_best * 1e6,
           "python_us_per_batch": py_best * 1e6, "overhead_us_per_batch": (py_best - c_best) * 1e6,
           "throughput_ratio_python_over_c": c_best / py_best}
    print(json.dumps(res, indent=1))

if __name__ == "__main__":
    main()
