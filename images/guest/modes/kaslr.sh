# Mode kaslr: where the kernel runs. Prints "VMM-KASLR text=<virtual
# address of _text> code=<physical start of Kernel code>" from
# /proc/kallsyms and /proc/iomem (real addresses: init runs as root). With
# KASLR both move from boot to boot; with nokaslr they are
# ffffffff81000000 and 01000000. PASS.
. /lib/vmm/lib.sh

text=$(grep -m 1 ' _text$' /proc/kallsyms | cut -d ' ' -f 1)
code=$(grep -m 1 'Kernel code' /proc/iomem | sed 's/^ *//; s/-.*//')
[ -n "$text" ] && [ -n "$code" ] || vmm_fail "no _text in /proc/kallsyms or Kernel code in /proc/iomem"
vmm_say "VMM-KASLR text=$text code=$code"
