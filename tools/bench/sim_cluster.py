#!/usr/bin/env python3
"""The cluster description of the benchmarks' simulated nodes: N nodes
sim00001..simNNNNN (MAC 52:54:01:XX:XX:XX after their number) booting IMAGE
(kernel vmlinuz-cloud, initrd initrd-dim.img) from second-level server
"leaf" under top server "top".

  sim_cluster.py N IMAGE TFTP_ROOT > cluster.xml
"""
import sys

n, image, tftp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f'''<?xml version="1.0" encoding="UTF-8"?>
<site name="sim" domain="sim.test" image="{image}" server="leaf" tftp-root="{tftp}" kernel-args="console=ttyS0 quiet">
  <networks><network name="boot" subnet="10.200.0.0/16" gateway="10.200.0.1" node-base="10.200.1.0"/></networks>
  <images><image name="{image}" kernel="vmlinuz-cloud" initrd="initrd-dim.img"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="10.200.0.2"/>
    <server name="leaf" network="boot" address="10.200.0.3"/>
  </servers>
  <naming pattern="sim{{slot:05}}"><level name="slot" first="1" count="{n}"/></naming>
  <nodes>''')
for i in range(1, n + 1):
    print(f'    <node slot="{i}"><interface network="boot" mac="52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"/></node>')
print('  </nodes>\n</site>')
