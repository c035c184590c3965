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
# Eight colours, then the same colours dashed: eleven servers stay apart.
set for [i=1:8] linetype i dashtype 1
set for [i=9:16] linetype i linecolor (i - 8) dashtype 2
n = words(servers)
set ylabel 'open descriptors'
plot for [i=1:n] rows(word(servers, i)) using 1:4 with lines lt i title word(servers, i)
set ylabel 'RSS (MiB)'
plot for [i=1:n] rows(word(servers, i)) using 1:($5 / 1024.0) with lines lt i title word(servers, i)
set ylabel 'CPU (% of one core)'
plot for [i=1:n] rows(word(servers, i)) using 1:6 with lines lt i title word(servers, i)
unset multiplot
