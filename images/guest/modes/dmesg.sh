# Mode dmesg: print the kernel log with its timestamps (for finding where
# boot time goes; the lines are framed by VMM-DMESG-BEGIN and -END). PASS.
echo VMM-DMESG-BEGIN
dmesg
echo VMM-DMESG-END
exit 0
