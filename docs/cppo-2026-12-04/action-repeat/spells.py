import csv,glob,sys,numpy as np
for path in sys.argv[1:]:
    r=list(csv.DictReader(open(path)))
    rec=np.array([float(x["cppo/recovery"]) for x in r]); J=np.array([float(x["cost_estimate"]) for x in r])
    R=np.array([float(x["episodic_return"]) for x in r]); C=np.array([float(x["episodic_cost"]) for x in r])
    spells=[]; i=0
    while i<len(r):
        j=i
        while j+1<len(r) and rec[j+1]==rec[i]: j+=1
        spells.append((int(rec[i]),i,j)); i=j+1
    rs=[s for s in spells if s[0]==1]; ns=[s for s in spells if s[0]==0]
    start_J=[J[s[1]] for s in rs]
    # return change over a spell: mean return of the 2 rows after the spell's end vs the 2 rows before its start
    def delta(s):
        a=R[max(0,s[1]-2):s[1]]; b=R[s[2]+1:s[2]+3]
        return (b.mean()-a.mean()) if len(a) and len(b) else np.nan
    print(path.split("/")[-2][:45], f"recovery spells {len(rs)}, mean length {np.mean([s[2]-s[1]+1 for s in rs]):.1f} updates; normal spells mean length {np.mean([s[2]-s[1]+1 for s in ns]):.1f}")
    print(f"   J_c at recovery start: median {np.median(start_J):.1f} (range {min(start_J):.1f}-{max(start_J):.1f}); rollout cost in recovery {np.nanmean(C[rec==1]):.1f}, in normal {np.nanmean(C[rec==0]):.1f}")
    print(f"   return change across recovery spells: mean {np.nanmean([delta(s) for s in rs]):+.2f}; across normal spells {np.nanmean([delta(s) for s in ns]):+.2f}")
