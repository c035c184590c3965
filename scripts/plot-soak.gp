# plot-soak.gp — the three per-server series of scripts/soak.sh, one panel each.
#   gnuplot -e "csv='soak.csv'; png='soak.png'; servers='echo-epoll chat-server'" plot-soak.gp
# The CSV: t_s,server,pid,fds,rss_kb,cpu_pct (one row per server per second).
set datafile separator ','
set terminal pngcairo size 1200,1100 noenhanced font ',9'
set output png
set multiplot layout 3,1 title 'soak: every server at once under normal and hostile load'
set key outside right top
set grid
set xlabel 'seconds'
# One server's rows (a NaN for the others would break its line at every row).
rows(s) = '< grep -F ",'.s.'," '.csv
set ylabel 'open descriptors'
plot for [s in servers] rows(s) using 1:4 with lines title s
set ylabel 'RSS (MiB)'
plot for [s in servers] rows(s) using 1:($5 / 1024.0) with lines title s
set ylabel 'CPU (% of one core)'
plot for [s in servers] rows(s) using 1:6 with lines title s
unset multiplot
