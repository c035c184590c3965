# plot-dispatch.gp — dispatch-bench sweep, log-log: CPU µs per dispatch round
# against watched descriptors; one panel per active count, one colour per
# backend, our raw loop solid and libevent dashed.
# Called by scripts/dispatch-sweep.sh:
#   gnuplot -e "datafile='results/dispatch.dat'; outfile='results/dispatch.png'; fmt='png'; actives='1 100'" scripts/plot-dispatch.gp
nact = words(actives)
if (fmt eq 'svg') {
    set terminal svg size 1200,520 dynamic enhanced font 'Sans,12' background rgb 'white'
} else {
    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
        set terminal pngcairo size 1200,520 enhanced font 'Sans,11' background rgb 'white'
    } else {
        set terminal png size 1200,520 enhanced
    }
}
set output outfile
set logscale xy
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set key top left box opaque
set xlabel 'watched descriptors (socketpairs, one end each)'
set ylabel 'CPU µs per dispatch round'
set format x '10^{%L}'
set format y '10^{%L}'
set style line 1 lc rgb '#d62728' lw 2 pt 7 dt 1
set style line 2 lc rgb '#d62728' lw 2 pt 6 dt 2
set style line 3 lc rgb '#1f77b4' lw 2 pt 5 dt 1
set style line 4 lc rgb '#1f77b4' lw 2 pt 4 dt 2
set style line 5 lc rgb '#2ca02c' lw 2 pt 9 dt 1
set style line 6 lc rgb '#2ca02c' lw 2 pt 8 dt 2
set multiplot layout 1, nact title 'select vs poll vs epoll: cost of one round (libevent bench method)'
do for [a = 1:nact] {
    set title sprintf('%s active', word(actives, a))
    base = (a - 1) * 6
    plot for [k = 0:5] datafile index (base + k) using 1:2 with linespoints ls (k + 1) \
         title columnheader(1)
}
unset multiplot
