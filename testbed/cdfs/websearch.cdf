# Web-search workload of DCTCP (Alizadeh et al., SIGCOMM 2010, Fig. 4), as used by
# pFabric (SIGCOMM 2013) and PIAS (NSDI 2015).
# Points from DCTCP_CDF of github.com/datacenter/empirical-traffic-gen (the
# pFabric authors' traffic generator); sizes between points are interpolated linearly.
# size_bytes cdf
0 0
10000 0.15
20000 0.2
30000 0.3
50000 0.4
80000 0.53
200000 0.6
1000000 0.7
2000000 0.8
5000000 0.9
10000000 0.97
30000000 1
