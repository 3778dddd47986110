# Data-mining workload of VL2 (Greenberg et al., SIGCOMM 2009, Fig. 2), as used by
# pFabric (SIGCOMM 2013) and PIAS (NSDI 2015).
# Points from VL2_CDF of github.com/datacenter/empirical-traffic-gen (the pFabric
# authors' traffic generator); sizes between points are interpolated linearly.
# Its largest flows are 1 GB: at 10 Mb/s one takes over 13 minutes.
# size_bytes cdf
0 0
180 0.1
216 0.2
560 0.3
900 0.4
1100 0.5
1870 0.6
3160 0.7
10000 0.8
400000 0.9
3160000 0.95
100000000 0.98
1000000000 1
