# plot-multiplexing.gp — one figure of scripts/compare-multiplexing.sh against
# the number of idle connections (log axis; 0 idle drawn at 10):
#   what='rps'  requests/s      what='p99'  p99 latency      what='cpu'  server CPU µs per request
#   gnuplot -e "datafile='results/multiplexing.dat'; outfile='results/multiplexing-rps.png'; fmt='png'; what='rps'; nservers=5; active=50" scripts/plot-multiplexing.gp
if (fmt eq 'svg') {
    set terminal svg size 860,620 dynamic enhanced font 'Sans,12' background rgb 'white'
} else {
    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
        set terminal pngcairo size 860,620 enhanced font 'Sans,11' background rgb 'white'
    } else {
        set terminal png size 860,620 enhanced
    }
}
set output outfile
set logscale x
set xrange [7:15000]
set xtics ('0' 10, '100' 100, '500' 500, '1k' 1000, '5k' 5000, '10k' 10000)
set grid xtics ytics lc rgb '#dddddd'
set key below horizontal maxcols 3
set xlabel sprintf('idle connections (beside %d active)', active)
if (what eq 'rps') {
    col = 3
    set ylabel 'requests/s'
    set yrange [0:*]
    set title 'Throughput as idle connections grow'
}
if (what eq 'p99') {
    col = 5
    set ylabel 'p99 latency (µs)'
    set logscale y
    set title 'p99 latency as idle connections grow'
}
if (what eq 'cpu') {
    col = 6
    set ylabel 'server CPU µs per request'
    set logscale y
    set title 'Server CPU per request as idle connections grow'
}
set style line 1 lc rgb '#d62728' lw 2 pt 7
set style line 2 lc rgb '#1f77b4' lw 2 pt 5
set style line 3 lc rgb '#2ca02c' lw 2 pt 9
set style line 4 lc rgb '#17becf' lw 2 pt 11 dt 2
set style line 5 lc rgb '#9467bd' lw 2 pt 13
set style line 6 lc rgb '#ff7f0e' lw 2 pt 15
set style line 7 lc rgb '#8c564b' lw 2 pt 4 dt 3
set style line 8 lc rgb '#e377c2' lw 2 pt 6 dt 4
# (--uring draws echo-epoll and echo-uring's five steps: eight styles before any repeats)
plot for [k = 0:nservers - 1] datafile index k using 1:col with linespoints ls (k % 8 + 1) \
     title columnheader(1)
