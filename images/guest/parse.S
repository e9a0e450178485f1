/*
 * The number parser of the guest's freestanding tools (outb.S, vsock.S),
 * which .include it in their text; images/build assembles them with this
 * directory on the include path.
 */
/*
 * parse: %rsi = NUL-terminated string, decimal or 0x-prefixed hex. Returns
 * %rax = value and %rdx = 0, or %rdx = 1 if the string is empty, has a bad
 * digit or exceeds 0xffffffff. Clobbers %rcx, %rsi, %r8 and %r9; callers
 * check their own, smaller limits.
 */
parse:
	xor	%eax, %eax
	mov	$10, %r8d
	mov	$0xffffffff, %r9d
	cmpb	$0, (%rsi)
	je	bad
	cmpb	$'0', (%rsi)
	jne	digits
	movzbl	1(%rsi), %ecx
	or	$0x20, %ecx
	cmp	$'x', %ecx
	jne	digits
	add	$2, %rsi
	mov	$16, %r8d
	cmpb	$0, (%rsi)
	je	bad
digits:
	movzbl	(%rsi), %ecx
	test	%ecx, %ecx
	jz	good
	sub	$'0', %ecx
	cmp	$9, %ecx
	jbe	have_digit
	movzbl	(%rsi), %ecx
	or	$0x20, %ecx
	sub	$'a', %ecx
	cmp	$5, %ecx
	ja	bad
	add	$10, %ecx
have_digit:
	cmp	%r8d, %ecx
	jae	bad
	imul	%r8, %rax		/* < 2^36: no overflow */
	add	%rcx, %rax
	cmp	%r9, %rax
	ja	bad
	inc	%rsi
	jmp	digits
good:
	xor	%edx, %edx
	ret
bad:
	mov	$1, %edx
	ret
